"""`mlcd judge`: the judge of one rollout step against Prometheus (mlcd/rollout/watch.py).

The Kubernetes target runs the same loop as an Argo Rollouts Job metric in the release's image
(`python -m mlcd.rollout.watch`, the same arguments); this command is it where mlcd is
installed, e.g. to replay a step against a cluster's Prometheus.
"""

from __future__ import annotations

import argparse

from mlcd.context import Command, Context
from mlcd.rollout import watch


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return watch.run(args, ctx.stream)


COMMAND = Command(
    name="judge",
    help="judge a canary against stable from Prometheus (the Kubernetes analysis Job)",
    description="Every interval, read the canary's and the stable pods' counters from "
    "Prometheus and ask mlcd's judge; exit 0 when the step passes (its tolerances shown), 1 "
    "when it fails or is still inconclusive after max-intervals. One JSON line per interval.",
    example="mlcd judge --prometheus http://prometheus.monitoring:9090 \\\n"
    '  --canary \'app_kubernetes_io_name="m",rollouts_pod_template_hash="7d9f"\' \\\n'
    '  --stable \'app_kubernetes_io_name="m",rollouts_pod_template_hash="5c4b"\' \\\n'
    "  --interval 30s --min-requests 200 --analysis '{\"max-error-rate\": 0.01}'",
    add_arguments=watch.add_arguments,
    run=_run,
)

"""`mlcd evaluate`: the evaluation gate (the work is in `mlcd.evaluation`).

On the held-out rows of `mlcd train`: the task's metrics with bootstrap intervals, per-slice
metrics, thresholds (also per slice), and a paired-bootstrap comparison with the registry's
`champion` on the same rows. Always writes `evaluate/verdict.json` (one entry per check),
`summary.md` (table + Mermaid chart), `report.html` (matplotlib plots) and `model_card.md`,
then registers the candidate in the model registry (unless `--no-register`).
"""

from __future__ import annotations

import argparse

from mlcd.context import Command, Context
from mlcd.evidence import StageOutcome, StageResult

STAGE = "evaluate"


def _body(ctx: Context, *, register: bool) -> StageOutcome:
    from mlcd import evaluation  # NumPy, pandas, matplotlib: only when evaluating

    return evaluation.body(ctx, register=register)


def stage(ctx: Context, *, register: bool = True) -> StageResult:
    return ctx.run_stage(STAGE, lambda: _body(ctx, register=register))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-register",
        action="store_true",
        help="do not add the candidate to the model registry",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx, register=not args.no_register))


COMMAND = Command(
    name="evaluate",
    help="metrics, thresholds and comparison with the champion; writes a verdict",
    description="Score the model from `mlcd train` on its held-out rows: metrics with "
    "bootstrap intervals, slices, thresholds, and a paired comparison with the registry's "
    "champion. Writes evaluate/verdict.json, summary.md (with a Mermaid chart), report.html "
    "and model_card.md, and registers the candidate. Exit 1 when a check fails.",
    example="mlcd evaluate --config model/mlcd.yaml\nmlcd evaluate --format json | jq .metrics",
    add_arguments=_arguments,
    run=_run,
)

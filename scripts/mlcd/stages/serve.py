"""`mlcd serve`: the model server (the image runs the same server as `python -m mlcd.serve`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mlcd.context import Command, Context
from mlcd.serve.settings import from_env, parse_value

_OPTIONS: dict[str, tuple[str, str]] = {
    "--model-dir": (
        "model_dir",
        "folder with model.skops and model.json (env MLCD_MODEL_DIR; default: <out>/train)",
    ),
    "--host": (
        "host",
        "address to listen on (env MLCD_HOST; default 127.0.0.1; the image uses 0.0.0.0)",
    ),
    "--port": ("port", "TCP port, 0 for a free one (env MLCD_PORT; default 8080)"),
    "--workers": ("workers", "worker processes (env MLCD_WORKERS; default: one per core)"),
    "--model-version": (
        "model_version",
        "version reported in responses and metrics (env MLCD_MODEL_VERSION)",
    ),
    "--max-body-bytes": (
        "max_body_bytes",
        "largest request body (env MLCD_MAX_BODY_BYTES; default 1 MiB)",
    ),
    "--batch-wait-ms": (
        "batch_wait_ms",
        (
            "how long an idle worker waits to fill a batch (env MLCD_BATCH_WAIT_MS; "
            "default 0: batches form while the model is busy)"
        ),
    ),
    "--grace-s": ("grace_s", "how long SIGTERM waits for in-flight requests (env MLCD_GRACE_S)"),
}


def _arguments(parser: argparse.ArgumentParser) -> None:
    for flag, (dest, text) in _OPTIONS.items():
        parser.add_argument(flag, dest=f"opt_{dest}", metavar=dest.upper(), default=None, help=text)
    parser.add_argument(
        "--check",
        action="store_true",
        help="load the model, predict one row, print its metadata and exit (no server)",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    from mlcd.serve.server import check_model, serve

    settings = from_env()
    changes = {}
    for flag, (dest, _) in _OPTIONS.items():
        raw = getattr(args, f"opt_{dest}")
        if raw is not None:
            changes[dest] = parse_value(dest, raw, flag)
    if "model_dir" not in changes and not os.environ.get("MLCD_MODEL_DIR"):
        changes["model_dir"] = Path(ctx.out) / "train"
    settings = settings.with_options(**changes)
    if args.check:
        card = check_model(settings)
        if ctx.fmt == "json":
            print(json.dumps(card, indent=2, default=str), file=ctx.stream)
        else:
            print(
                f"✅ serve: {card['name']} {card['version']} ({card['task']}, "
                f"{len(card.get('features') or [])} features, {card['estimator']}) loads and "
                "predicts",
                file=ctx.stream,
            )
        return 0
    return serve(settings)


COMMAND = Command(
    name="serve",
    help="the model server that runs inside the image",
    description="Serve one model over HTTP: POST /predict, the Open Inference Protocol v2 "
    "routes, /healthz, /readyz, /metrics (Prometheus), /v1/metadata and "
    "/v1/recent-predictions. One worker process per core; concurrent requests are batched "
    "into one predict call. SIGTERM finishes in-flight requests before exiting. Settings "
    "come from MLCD_* environment variables, overridden by the options below.",
    example="mlcd serve --model-dir .mlcd/train --port 8080\n"
    "mlcd serve --check --model-dir .mlcd/train\n"
    "curl -s localhost:8080/predict -d '{\"instances\": [[…30 numbers…]]}'",
    add_arguments=_arguments,
    run=_run,
)

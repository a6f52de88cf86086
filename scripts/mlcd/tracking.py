"""Logging train and evaluate as runs of an MLflow tracking server, when one is configured.

The server is `tracking.uri`, else `registry.tracking-uri` (with the mlflow registry
backend), else MLFLOW_TRACKING_URI; none of them set: nothing is logged. Each stage logs
one run of experiment `tracking.experiment` (default: the project): its params, its metrics
(evaluate's with their bootstrap intervals as `<metric>_ci_low`/`_ci_high`), the verdict as a
tag, its documents as artifacts (evaluate: report, model card, verdict) and the training
data's sha256 as the run's dataset input. The run's page is returned for result.json's
`details.tracking`, which the run page and the PR comment link.

Tracking is a record, not a gate: a server that cannot be reached is a line in the stage's
reasons and `details.tracking.error`, never a failed stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlcd.context import Context
from mlcd.errors import MlcdError
from mlcd.evidence import StageOutcome


def server_uri(ctx: Context) -> str:
    from mlcd.tools.mlflow import tracking_uri

    cfg = ctx.config
    if cfg.tracking.uri:
        return cfg.tracking.uri.rstrip("/")
    if cfg.registry.backend == "mlflow" and cfg.registry.tracking_uri:
        return cfg.registry.tracking_uri.rstrip("/")
    return tracking_uri()


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= _flat_params(value, f"{name}.")
        else:
            out[name] = str(value)
    return out


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_stage(
    ctx: Context,
    stage: str,
    outcome: StageOutcome,
    *,
    meta: Mapping[str, Any],
    files: Mapping[str, Path],
    extra_metrics: Mapping[str, float] | None = None,
) -> None:
    """Log the stage's run and record where it is in `outcome.details["tracking"]`."""
    uri = server_uri(ctx)
    if not uri:
        return
    from mlcd.tools.mlflow import MLflow

    ctx.progress(f"logging the {stage} run to MLflow at {uri}")
    try:
        client = MLflow.from_env(uri)
        client.max_attempts = 2
        experiment = ctx.config.tracking.experiment or ctx.config.project
        experiment_id = client.experiment_id(experiment)
        fingerprint = str(meta.get("fingerprint", ""))
        run = client.create_run(
            experiment_id,
            f"{stage} {fingerprint[:12]}".strip(),
            {
                "mlcd.stage": stage,
                "mlcd.status": outcome.status,
                "mlcd.fingerprint": fingerprint,
                "mlflow.source.name": "mlcd",
                "mlflow.source.git.commit": str(meta.get("git_sha") or ""),
                "mlflow.note.content": outcome.summary,
            },
        )
        run_id, artifacts = str(run["run_id"]), str(run["artifact_uri"])
        params = _flat_params(
            {
                "estimator": meta.get("estimator", ""),
                "task": meta.get("task", ""),
                "target": meta.get("target", ""),
                "seed": meta.get("seed", ""),
                "test_size": meta.get("test_size", ""),
                "params": meta.get("params") or {},  # redacted by train
            }
        )
        metrics = _numbers(outcome.metrics) | dict(extra_metrics or {})
        tags = {"mlcd.summary": outcome.summary[:4000]}
        if stage == "evaluate":
            tags["mlcd.verdict"] = "passed" if outcome.status == "pass" else "failed"
        client.log_batch(run_id, params=params, metrics=metrics, tags=tags)
        client.log_dataset(
            run_id,
            name=Path(str(ctx.config.model.data)).name,
            digest=str(meta.get("data_sha256", "")),
            source=str(ctx.config.model.data),
            context="training" if stage == "train" else "evaluation",
        )
        for path in files.values():
            if path.is_file():
                client.upload(artifacts, path.name, path)
        client.finish_run(run_id, "FINISHED" if outcome.status == "pass" else "FAILED")
    except MlcdError as exc:
        outcome.reasons.append(f"MLflow tracking at {uri} failed: {exc.message}")
        outcome.details["tracking"] = {"uri": uri, "error": exc.message}
        return
    url = client.run_url(experiment_id, run_id)
    outcome.reasons.append(f"logged to MLflow: {url}")
    outcome.details["tracking"] = {
        "uri": uri,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "url": url,
    }


def interval_metrics(intervals: Mapping[str, Any]) -> dict[str, float]:
    """Evaluate's bootstrap intervals as MLflow metrics `<metric>_ci_low` / `_ci_high`."""
    out: dict[str, float] = {}
    for name, bounds in intervals.items():
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            for suffix, value in zip(("ci_low", "ci_high"), bounds, strict=True):
                if isinstance(value, int | float):
                    out[f"{name}_{suffix}"] = float(value)
    return out

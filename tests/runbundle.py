"""A complete evidence bundle for the run report's tests, stage by stage.

The `details` and `metrics` of build, scan, release and deploy follow what those stages
write (mlcd.stages.build / scan / release / deploy and mlcd.rollout.local's measurements);
keep them in step when those change. `evaluate_from` copies a real train + evaluate run
(with its plots) instead of the small synthetic one.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlcd.evidence import Bundle, StageResult

STAGES = (
    "lint",
    "test",
    "train",
    "evaluate",
    "build",
    "scan",
    "release",
    "deploy-staging",
    "deploy-production",
)
IMAGE_ID = "sha256:" + "3" * 64
PUSHED = "127.0.0.1:5000/breast-cancer@sha256:" + "9" * 64
INPUTS = {"config_sha256": "c" * 64, "git_sha": "0123456789abcdef0123456789abcdef01234567"}


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A small solid-colour PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * size
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


def _write(root: Path, stage: str, minute: int, status: str, summary: str, **rest: Any) -> None:
    result = StageResult(
        stage=stage,
        status=status,  # type: ignore[arg-type]
        started=f"2030-01-01T00:{minute:02d}:00.000Z",
        duration_s=rest.pop("duration_s", 1.5),
        summary=summary,
        inputs=dict(INPUTS),
        **rest,
    )
    Bundle(root).write(result, "")


def _evaluate(root: Path) -> None:
    folder = root / "evaluate"
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in (("roc", (31, 119, 180)), ("confusion_matrix", (8, 48, 107))):
        (folder / f"{name}.png").write_bytes(png(colour))
    verdict = {
        "passed": True,
        "summary": "passed 3 checks; accuracy 0.9737, roc_auc 0.9960",
        "confidence": 0.95,
        "holdout_rows": 114,
        "bootstrap_samples": 1000,
        "metrics": {
            "accuracy": 0.9737,
            "precision": 0.9589,
            "recall": 1.0,
            "f1": 0.9793,
            "roc_auc": 0.996,
            "log_loss": 0.1225,
        },
        "intervals": {"accuracy": [0.9471, 1.0], "roc_auc": [0.9875, 1.0], "f1": [0.954, 1.0]},
        "champion_metrics": {"accuracy": 0.9825, "roc_auc": 0.9954, "f1": 0.9861},
        "checks": [
            {
                "kind": "threshold",
                "metric": "accuracy",
                "bound": "≥ 0.92",
                "passed": True,
                "value": 0.9737,
                "line": "accuracy 0.9737 meets ≥ 0.92",
            },
            {
                "kind": "threshold",
                "metric": "roc_auc",
                "bound": "≥ 0.97",
                "passed": True,
                "value": 0.996,
                "line": "roc_auc 0.9960 meets ≥ 0.97",
            },
            {
                "kind": "champion",
                "metric": "roc_auc",
                "bound": "worse by ≤ 0.01",
                "passed": True,
                "value": 0.996,
                "line": "roc_auc 0.9960 vs champion v1 0.9954: within 0.01",
            },
        ],
        "comparison": {
            "status": "compared",
            "champion": "v1",
            "reason": "compared with champion v1 on the same 114 held-out rows",
            "rows": [
                {
                    "metric": "roc_auc",
                    "candidate": 0.996,
                    "champion": 0.9954,
                    "difference": 0.0006,
                    "interval": [-0.0033, 0.0062],
                    "gated": True,
                    "passed": True,
                    "max_regression": 0.01,
                    "worse_by": -0.0006,
                },
                {
                    "metric": "accuracy",
                    "candidate": 0.9737,
                    "champion": 0.9825,
                    "difference": -0.0088,
                    "interval": [-0.0263, 0.0],
                    "gated": False,
                    "passed": True,
                    "max_regression": None,
                    "worse_by": 0.0088,
                },
            ],
        },
        "slices": [],
        "model": {"fingerprint": "f" * 64, "sha256": "a" * 64},
    }
    (folder / "verdict.json").write_text(json.dumps(verdict), "utf-8")
    _write(
        root,
        "evaluate",
        3,
        "pass",
        verdict["summary"],
        metrics=verdict["metrics"],
        reasons=[c["line"] for c in verdict["checks"]],
        artifacts={
            "verdict": "evaluate/verdict.json",
            "report": "evaluate/report.html",
            "plot_roc": "evaluate/roc.png",
            "plot_confusion_matrix": "evaluate/confusion_matrix.png",
        },
        details={
            "comparison": verdict["comparison"],
            "intervals": verdict["intervals"],
            "registry": {"registered": True, "registry": "/tmp/registry", "version": "v2"},
            "slices": [],
        },
    )


def _train(root: Path) -> None:
    folder = root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": "breast-cancer",
        "task": "classification",
        "estimator": "Pipeline",
        "target": "diagnosis",
        "features": [
            {"name": "mean radius", "dtype": "float64", "kind": "number", "min": 6.98, "max": 28.1}
        ],
        "classes": [0, 1],
    }
    (folder / "model.json").write_text(json.dumps(meta), "utf-8")
    _write(
        root,
        "train",
        2,
        "pass",
        "fitted Pipeline on 455 rows, 30 features in 0.09s",
        metrics={"features": 30, "holdout_rows": 114, "rows": 569, "train_rows": 455},
        artifacts={"metadata": "train/model.json", "model": "train/model.skops"},
    )


def _build(root: Path) -> None:
    _write(
        root,
        "build",
        4,
        "pass",
        "127.0.0.1:5000/breast-cancer:build-333333333333 (366.2 MB), contract passed",
        duration_s=44.9,
        metrics={"image_mb": 366.2, "build_seconds": 38.2},
        details={
            "image": f"127.0.0.1:5000/breast-cancer@{IMAGE_ID}",
            "image_id": IMAGE_ID,
            "tag": "127.0.0.1:5000/breast-cancer:build-333333333333",
            "name": "127.0.0.1:5000/breast-cancer",
            "size_bytes": 366242719,
            "size_mb": 366.2,
            "user": "10001:10001",
            "base_image": "local/python:3.11-bookworm",
            "build_seconds": 38.2,
            "cached_steps": 2,
            "steps": 25,
            "contract": {
                "skipped": False,
                "passed": True,
                "rows": 114,
                "agree": 114,
                "ready_seconds": 1.16,
                "health": "healthy",
                "user": "10001:10001",
                "problems": [],
            },
        },
    )


def _scan(root: Path) -> None:
    folder = root / "scan"
    folder.mkdir(parents=True, exist_ok=True)
    components = [{"name": f"pkg{i}", "type": "library"} for i in range(140)]
    components[0]["components"] = [{"name": "nested", "type": "library"}]
    (folder / "sbom.cdx.json").write_text(
        json.dumps({"bomFormat": "CycloneDX", "components": components}), "utf-8"
    )
    suppressed = {
        "kind": "vulnerability",
        "id": "CVE-2030-0001",
        "severity": "CRITICAL",
        "title": "openssl: crafted",
        "target": "image",
        "source": "trivy",
        "package": "openssl",
        "installed": "3.0.1",
        "fixed": "3.0.2",
        "gate": "suppressed",
        "suppressed_by": {
            "id": "CVE-2030-0001",
            "package": "openssl",
            "reason": "not reachable: no TLS in the server",
            "expires": "2030-06-30",
            "owner": "ml-platform",
            "where": ".mlcd-ignore.yaml:3",
        },
    }
    findings = [suppressed] + [
        {
            "kind": "vulnerability",
            "id": f"CVE-2030-{i:04d}",
            "severity": sev,
            "title": "t",
            "target": "image",
            "source": "trivy",
            "package": "libx",
            "installed": "1",
            "fixed": "",
            "gate": "below" if sev != "HIGH" else "unfixed",
            "suppressed_by": None,
        }
        for i, sev in enumerate(["HIGH", "MEDIUM", "MEDIUM", "LOW", "LOW", "LOW"], 2)
    ]
    (folder / "findings.json").write_text(json.dumps({"findings": findings}), "utf-8")
    _write(
        root,
        "scan",
        5,
        "pass",
        "no finding fails the gate (7 found); 1 suppressed; scanned image, Dockerfile",
        metrics={
            "findings": 7,
            "failing": 0,
            "suppressed": 1,
            "expired_ignores": 0,
            "unfixed": 1,
            "below_threshold": 5,
            "severity_critical": 1,
            "severity_high": 1,
            "severity_medium": 2,
            "severity_low": 3,
            "severity_unknown": 0,
            "sarif_results": 7,
            "sarif_dropped": 0,
            "image_packages": 141,
        },
        artifacts={"sbom": "scan/sbom.cdx.json", "findings": "scan/findings.json"},
        details={
            "image": f"127.0.0.1:5000/breast-cancer@{IMAGE_ID}",
            "image_os": "debian 12.7",
            "trivy_version": "0.76.0",
            "parts": [
                {
                    "name": "image",
                    "target": "image",
                    "scanned": True,
                    "reason": "",
                    "seconds": 4.1,
                    "findings": 7,
                },
                {
                    "name": "model",
                    "target": "model files",
                    "scanned": False,
                    "reason": "skipped: no model file",
                    "seconds": 0,
                    "findings": 0,
                },
            ],
            "policy": {
                "severity": "HIGH",
                "ignore_unfixed": True,
                "ignore_file": ".mlcd-ignore.yaml",
            },
            "ignores": {"entries": 1, "expired": [], "unused": []},
        },
    )


def _release(root: Path) -> None:
    _write(
        root,
        "release",
        6,
        "pass",
        f"0.1.1: {PUSHED}",
        details={
            "version": "0.1.1",
            "model_version": "v2",
            "image": PUSHED,
            "image_id": IMAGE_ID,
            "evidence_digest": "sha256:" + "e" * 64,
            "evidence": "/tmp/registry/releases/0.1.1/evidence.tar.gz",
            "released": "2030-01-01T00:06:01.000Z",
            "existing": False,
        },
    )


def measurement(phase: str, outcome: str, totals: dict[str, Any], second: int) -> dict[str, Any]:
    """One entry of `details.measurements` as mlcd.rollout.local records it."""
    return {
        "time": f"2030-01-01T00:07:{second:02d}.000Z",
        "phase": phase,
        "outcome": outcome,
        "reasons": [f"{phase}: {outcome}"],
        "metrics": totals,
    }


def _arms(cr: int, ce: int, sr: int, se: int, *, p99: tuple[float, float]) -> dict[str, Any]:
    cp99, sp99 = p99
    return {
        "canary_requests": cr,
        "canary_errors": ce,
        "stable_requests": sr,
        "stable_errors": se,
        "canary_p99_ms": cp99,
        "stable_p99_ms": sp99,
        "canary_p50_ms": cp99 / 3,
        "stable_p50_ms": sp99 / 3,
    }


def _deploy(root: Path, env: str, minute: int) -> None:
    if env == "staging":
        strategy, outcome = "canary", "promoted"
        steps = [
            measurement("canary 10%", "inconclusive", _arms(48, 0, 452, 1, p99=(9.5, 8.8)), 10),
            measurement("canary 10%", "pass", _arms(101, 1, 905, 2, p99=(11.0, 9.1)), 20),
            measurement("canary 50%", "pass", _arms(352, 2, 1160, 3, p99=(12.4, 9.6)), 30),
        ]
    else:
        strategy, outcome = "blue-green", "promoted"
        steps = [
            measurement("preview", "pass", _arms(210, 0, 205, 0, p99=(14.0, 13.2)), 40),
            measurement("preview", "pass", _arms(420, 1, 410, 0, p99=(15.2, 13.9)), 50),
        ]
    _write(
        root,
        f"deploy-{env}",
        minute,
        "pass",
        f"0.1.1 promoted in {env}",
        duration_s=42.0,
        metrics={k: v for k, v in steps[-1]["metrics"].items() if v is not None},
        details={
            "env": env,
            "version": "0.1.1",
            "image": PUSHED,
            "strategy": strategy,
            "target": "local",
            "outcome": outcome,
            "router": "127.0.0.1:8081",
            "measurements": steps,
            "analysis": {"max_error_rate": 0.01, "max_p99_latency_ms": 50},
        },
    )


def write_bundle(
    root: Path, stages: Iterable[str] = STAGES, *, evaluate_from: Path | None = None
) -> Bundle:
    """Write the chosen stages' results (and run.json when every stage is there)."""
    chosen = list(stages)
    root.mkdir(parents=True, exist_ok=True)
    if "lint" in chosen:
        _write(root, "lint", 0, "pass", "no findings (ruff, bandit)")
    if "test" in chosen:
        _write(root, "test", 1, "pass", "12 passed; coverage 93% ≥ 80%")
    if evaluate_from is not None:
        for stage in ("train", "evaluate"):
            if stage in chosen:
                shutil.copytree(evaluate_from / stage, root / stage, dirs_exist_ok=True)
    else:
        if "train" in chosen:
            _train(root)
        if "evaluate" in chosen:
            _evaluate(root)
    writers = {"build": _build, "scan": _scan, "release": _release}
    for stage, write in writers.items():
        if stage in chosen:
            write(root)
    for minute, env in ((7, "staging"), (8, "production")):
        if f"deploy-{env}" in chosen:
            _deploy(root, env, minute)
    return Bundle(root)


def write_run_json(root: Path, status: str = "pass", stopped_at: str | None = None) -> None:
    records = [
        {"stage": r.stage, "status": r.status, "duration_s": r.duration_s, "summary": r.summary}
        for r in Bundle(root).stages()
    ]
    (root / "run.json").write_text(
        json.dumps(
            {
                "started": min((r.started for r in Bundle(root).stages()), default=""),
                "duration_s": 512.3,
                "status": status,
                "exit_code": {"pass": 0, "fail": 1}.get(status, 3),
                "stopped_at": stopped_at,
                "config": "model/mlcd.yaml",
                "inputs": INPUTS,
                "stages": records,
            }
        ),
        "utf-8",
    )

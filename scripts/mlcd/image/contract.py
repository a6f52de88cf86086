"""The image's contract test: the container answers as the model does in process.

Starts the image (published on 127.0.0.1, a free port), waits until /readyz says ready,
sends the held-out rows through POST /predict, and compares with `estimator.predict` run
here. Then waits for Docker's HEALTHCHECK to say healthy, and checks the user.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcd.errors import UserInputError
from mlcd.serve.client import Client
from mlcd.serve.model import ServedModel
from mlcd.serve.model import load as load_model
from mlcd.tools import docker

CHUNK = 64


@dataclass
class ContractResult:
    passed: bool
    rows: int = 0
    agree: int = 0
    ready_seconds: float = 0.0
    health: str = "unknown"
    user: str = ""
    problems: list[str] = field(default_factory=list)


def read_holdout(path: Path, model: ServedModel) -> list[list[Any]]:
    """The feature columns of holdout.csv, in model order, typed as the model wants."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [n for n in model.feature_names if n not in header]
            if missing:
                raise UserInputError(f"{path}: holdout has no column(s) {', '.join(missing[:5])}")
            rows = []
            for record in reader:
                row: list[Any] = []
                for feature in model.features:
                    raw = record[feature.name]
                    row.append(_number(raw) if feature.numeric else raw)
                rows.append(row)
    except OSError as exc:
        raise UserInputError(f"cannot read the held-out rows {path}: {exc}") from None
    return rows


def _number(raw: str) -> float:
    try:
        return float(raw) if raw != "" else math.nan
    except ValueError:
        return math.nan


def _same(expected: Any, got: Any, regression: bool) -> bool:
    if regression:
        return isinstance(got, int | float) and math.isclose(
            float(expected), float(got), rel_tol=1e-9, abs_tol=1e-9
        )
    return bool(expected == got)


def run_contract(
    image: str,
    model_dir: Path,
    holdout: Path,
    *,
    progress: Callable[[str], None] = lambda _m: None,
    ready_timeout: float = 90.0,
    health_timeout: float = 40.0,
) -> ContractResult:
    model = load_model(model_dir)
    rows = read_holdout(holdout, model)
    if not rows:
        raise UserInputError(f"{holdout}: no held-out rows to test the image with")
    frame = model.frame(np.asarray(rows, dtype=np.float64 if model.numeric else object))
    expected = np.asarray(model.estimator.predict(frame)).tolist()
    regression = model.task == "regression"
    result = ContractResult(passed=False, rows=len(rows))
    name = f"mlcd-contract-{os.getpid()}-{os.urandom(3).hex()}"
    progress("contract test: starting the container")
    container = docker.run_detached(
        image, name=name, ports={8080: 0}, labels={"io.mlcd.purpose": "contract-test"}
    )
    client = Client("127.0.0.1", container.ports[8080], timeout=30)
    try:
        started = time.monotonic()
        while True:
            try:
                if client.get("/readyz").status == 200:
                    break
            except OSError:
                pass
            state = docker.health(container.id)
            if state in ("exited", "missing"):
                logs = docker.logs(container.id, tail=20)
                result.problems.append("the container exited before it was ready")
                result.problems += [line for line in logs.splitlines() if line.strip()][-10:]
                return result
            if time.monotonic() - started > ready_timeout:
                result.problems.append(f"not ready within {ready_timeout:.0f} s")
                return result
            time.sleep(0.2)
        result.ready_seconds = round(time.monotonic() - started, 2)
        progress(f"contract test: {len(rows)} held-out rows through /predict")
        got: list[Any] = []
        for start in range(0, len(rows), CHUNK):
            reply = client.post_json("/predict", {"instances": rows[start : start + CHUNK]})
            if reply.status != 200:
                where = f"rows {start} to {start + CHUNK - 1}"
                result.problems.append(f"{where}: HTTP {reply.status}: {reply.body[:300]!r}")
                return result
            got += reply.json()["predictions"]
        mismatches = [
            i
            for i, (e, g) in enumerate(zip(expected, got, strict=False))
            if not _same(e, g, regression)
        ]
        result.agree = len(rows) - len(mismatches) - abs(len(expected) - len(got))
        for i in mismatches[:5]:
            result.problems.append(f"row {i}: in process {expected[i]!r}, the image {got[i]!r}")
        if len(got) != len(expected):
            result.problems.append(f"{len(got)} predictions for {len(expected)} rows")
        progress("contract test: waiting for the HEALTHCHECK")
        deadline = time.monotonic() + health_timeout
        while True:
            result.health = docker.health(container.id)
            if result.health in ("healthy", "unhealthy", "none", "exited", "missing"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if result.health != "healthy":
            result.problems.append(f"Docker health is {result.health!r}, not healthy")
        info = docker.inspect_container(container.id) or {}
        result.user = str((info.get("Config") or {}).get("User") or "")
        if result.user.split(":")[0] in ("", "0", "root"):
            result.problems.append(f"the container runs as root (User={result.user!r})")
        result.passed = not result.problems
        return result
    finally:
        client.close()
        docker.remove_container(container.id)

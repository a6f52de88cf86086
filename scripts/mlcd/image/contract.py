"""The image's contract test: the container answers as the model does in process.

Starts the image (published on 127.0.0.1, a free port), waits until /readyz says ready,
sends the held-out rows as typed rows (`mlcd.typedrows`: records with null for gaps,
strings as strings) in every body form the server takes: `POST /predict` with `records`
and with `instances`, and the Open Inference Protocol infer route with one input per
column (and, for an all-numeric model, one [N, F] tensor). Each form's predictions are
compared with `estimator.predict` run here on the rows as `mlcd evaluate` reads them. Then
waits for Docker's HEALTHCHECK to say healthy, and checks the user. Whatever the image
answers, the result is a list of problems, never an exception.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd import typedrows
from mlcd.errors import UserInputError
from mlcd.serve.client import Client
from mlcd.tools import docker

if TYPE_CHECKING:  # NumPy comes with the model, only when a contract test runs
    from mlcd.serve.model import ServedModel

CHUNK = 64


@dataclass
class ContractResult:
    passed: bool
    rows: int = 0
    agree: int = 0  # rows whose prediction is the in-process one in every form
    ready_seconds: float = 0.0
    health: str = "unknown"
    user: str = ""
    problems: list[str] = field(default_factory=list)
    forms: dict[str, int] = field(default_factory=dict)  # form -> rows that agree


def read_holdout(path: Path, model: ServedModel) -> tuple[list[dict[str, Any]], list[Any]]:
    """The held-out rows as typed records, and the in-process predictions for them."""
    import numpy as np

    features = model.spec.feature_dicts()
    target = model.spec.target or ""
    try:
        frame = typedrows.holdout_frame(path, features, target)
    except OSError as exc:
        raise UserInputError(f"cannot read the held-out rows {path}: {exc}") from exc
    records = typedrows.records_from_frame(frame, features)
    try:
        expected = np.asarray(model.estimator.predict(frame[model.feature_names])).tolist()
    except Exception as exc:  # the user's model on the user's rows
        raise UserInputError(
            f"in process, the model cannot predict the held-out rows of {path} "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    return records, expected


def _same(expected: Any, got: Any, regression: bool) -> bool:
    if regression:
        return isinstance(got, int | float) and math.isclose(
            float(expected), float(got), rel_tol=1e-9, abs_tol=1e-9
        )
    return bool(expected == got)


def _bodies(model: ServedModel, chunk: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """Per body form: the path and the JSON body for these rows."""
    features = model.spec.feature_dicts()
    names = model.feature_names
    forms: dict[str, tuple[str, Any]] = {
        "records": ("/predict", {"records": chunk}),
        "instances": ("/predict", {"instances": typedrows.instances(chunk, names)}),
        "v2 columns": (
            f"/v2/models/{model.name}/infer",
            typedrows.v2_columns(chunk, features),
        ),
    }
    if model.input_format == "array":
        forms["v2 tensor"] = (f"/v2/models/{model.name}/infer", typedrows.v2_tensor(chunk, names))
    return forms


def _predictions(form: str, reply: Any) -> list[Any]:
    data = reply.json()
    if form.startswith("v2"):
        outputs = {o["name"]: o for o in data["outputs"]}
        return list(outputs["predict"]["data"])
    return list(data["predictions"])


def _compare(
    client: Client,
    model: ServedModel,
    records: list[dict[str, Any]],
    expected: list[Any],
    result: ContractResult,
) -> None:
    """Every form, chunk by chunk; problems name the form, the rows and what differed."""
    import numpy as np

    regression = model.task == "regression"
    got: dict[str, list[Any]] = {}
    failed: set[str] = set()
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        for form, (path, body) in _bodies(model, chunk).items():
            if form in failed:
                continue
            where = f"{form}, rows {start} to {start + len(chunk) - 1}"
            try:
                reply = client.post_json(path, body)
            except OSError as exc:
                result.problems.append(f"{where}: no answer ({exc})")
                failed.add(form)
                continue
            if reply.status != 200:
                result.problems.append(f"{where}: HTTP {reply.status}: {reply.body[:300]!r}")
                failed.add(form)
                continue
            try:
                answers = _predictions(form, reply)
            except (ValueError, KeyError, TypeError) as exc:
                result.problems.append(f"{where}: unreadable answer ({exc}): {reply.body[:200]!r}")
                failed.add(form)
                continue
            got.setdefault(form, []).extend(answers)
    agree_all = np.ones(len(records), dtype=bool)
    for form in _bodies(model, records[:1]):
        answers = got.get(form, []) if form not in failed else []
        ok = np.zeros(len(records), dtype=bool)
        for i, (e, g) in enumerate(zip(expected, answers, strict=False)):
            ok[i] = _same(e, g, regression)
        result.forms[form] = int(ok.sum())
        agree_all &= ok
        if form in failed:
            continue
        for i in np.flatnonzero(~ok)[:5]:
            shown = i < len(answers)
            result.problems.append(
                f"{form}: row {i} {_short(records[i])}: in process {expected[i]!r}, the image "
                + (repr(answers[i]) if shown else "nothing")
            )
        if len(answers) != len(expected):
            result.problems.append(f"{form}: {len(answers)} predictions for {len(expected)} rows")
    result.agree = int(agree_all.sum())


def _short(record: dict[str, Any]) -> str:
    text = repr(record)
    return text if len(text) <= 120 else text[:117] + "…"


def run_contract(
    image: str,
    model_dir: Path,
    holdout: Path,
    *,
    progress: Callable[[str], None] = lambda _m: None,
    ready_timeout: float = 90.0,
    health_timeout: float = 40.0,
) -> ContractResult:
    from mlcd.serve.model import load as load_model

    model = load_model(model_dir)
    records, expected = read_holdout(holdout, model)
    if not records:
        raise UserInputError(f"{holdout}: no held-out rows to test the image with")
    result = ContractResult(passed=False, rows=len(records))
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
        forms = ", ".join(_bodies(model, records[:1]))
        progress(f"contract test: {len(records)} held-out rows as {forms}")
        try:
            _compare(client, model, records, expected, result)
        except Exception as exc:  # noqa: BLE001 - a gate failure that says why, not a traceback
            result.problems.append(
                f"the comparison could not finish: {type(exc).__name__}: {str(exc)[:300]}"
            )
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

"""The model zoo delivered end to end: every project under tests/zoo goes through `mlcd run`
(train, evaluate, build with its contract test, scan, release, deploy) with a canary: a
first run makes the stable release (a deploy needs a scanned release), the second, with
changed params, is rolled out as a canary against the first.

Each project runs in a copy of its folder with a unique project and image name, its own
model registry, environment state and router port. Projects run a few at a time (threads:
most of a delivery is waiting for Docker and for the canary's intervals), they share the
Docker build cache and the wheel cache. The live router is then asked for the held-out rows
in both body forms, which must equal the model's predictions in process. The figures (build
time, image size, run time) are printed and written to the session's folder (zoo.json).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlcd import entrypoint, projectcode
from mlcd.ports import free_port
from mlcd.tools.nginx import Nginx
from tests.conftest import ROOT
from tests.integration.deploy.helpers import post

pytestmark = pytest.mark.integration

ZOO = ROOT / "tests" / "zoo"
PROJECTS = sorted(p.name for p in ZOO.iterdir() if (p / "mlcd.yaml").is_file())
# MLCD_ZOO=owncode,boolean delivers only those (while working on one)
PROJECTS = [p for p in PROJECTS if p in os.environ.get("MLCD_ZOO", ",".join(PROJECTS)).split(",")]
# at once: 2 cores, but a delivery mostly waits (docker build, container start, canary)
WORKERS = int(os.environ.get("MLCD_ZOO_WORKERS", "3"))
# a second release must differ from the first: each project's changed params
SECOND_PARAMS: dict[str, dict[str, Any]] = {
    "columns": {"C": 0.5},
    "gaps": {"C": 0.5},
    "text": {"C": 2.0},
    "owncode": {"C": 0.5},
    "imblearn": {"n_estimators": 20},
    "nolabels": {"C": 0.5},
    "boolean": {"max_iter": 40},
    "dates": {"C": 0.5},
}


@dataclass
class Delivery:
    """One zoo project delivered twice; what each run returned and measured."""

    name: str
    root: Path
    project: str
    port: int
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def config(self) -> Path:
        return self.root / "mlcd.yaml"

    def out(self, run: int) -> Path:
        return self.root / f".mlcd-{run}"

    def result(self, run: int, stage: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.out(run) / stage / "result.json").read_text("utf-8")
        )
        return data

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "MLCD_IMAGE")}
        env.update(
            {
                "MLCD_STATE_DIR": str(self.root / "state"),
                "MLCD_REGISTRY_PATH": str(self.root / "registry"),
                "MLCD_STAGING_PORT": str(self.port),
                "GITHUB_SHA": "0" * 40,
            }
        )
        return env

    def run(self, number: int) -> subprocess.CompletedProcess[str]:
        # lint and test are the project's own checks, not the model's shape under test
        skip = "lint,test"
        clock = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcd",
                "run",
                "--skip",
                skip,
                "--config",
                str(self.config),
                "--out",
                str(self.out(number)),
            ],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        self.seconds.append(round(time.monotonic() - clock, 1))
        self.runs.append(done)
        return done

    def deliver(self) -> None:
        try:
            if self.run(1).returncode != 0:
                return
            config = yaml.safe_load(self.config.read_text("utf-8"))
            config["model"]["params"] = SECOND_PARAMS[self.name]
            self.config.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
            self.run(2)
        except Exception as exc:  # a thread's failure is reported by the test
            self.error = f"{type(exc).__name__}: {exc}"

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"project": self.name, "run_seconds": self.seconds}
        for run in (1, 2):
            path = self.out(run) / "build" / "result.json"
            if path.is_file():
                details = self.result(run, "build")["details"]
                out[f"build_seconds_{run}"] = details.get("build_seconds")
                out[f"image_mb_{run}"] = details.get("size_mb")
        return out

    def clean(self) -> None:
        Nginx(self.root / "state" / "staging" / "nginx").stop()
        names = subprocess.run(
            [
                "docker",
                "ps",
                "--all",
                "--format",
                "{{.Names}}",
                "--filter",
                f"label=mlcd.project={self.project}",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for name in names:
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
        tags = subprocess.run(
            [
                "docker",
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                f"127.0.0.1:5000/{self.project}",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for tag in tags:  # only this test's own images
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _copy(name: str, base: Path) -> Delivery:
    tag = uuid.uuid4().hex[:6]
    root = base / name
    shutil.copytree(ZOO / name, root, ignore=shutil.ignore_patterns("__pycache__", ".mlcd*"))
    project = f"zoo-{name}-{tag}"
    config = yaml.safe_load((root / "mlcd.yaml").read_text("utf-8"))
    config["project"] = project
    config["image"]["name"] = f"127.0.0.1:5000/{project}"
    (root / "mlcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return Delivery(name=name, root=root, project=project, port=free_port())


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Delivery]]:
    base = tmp_path_factory.mktemp("zoo")
    deliveries = {name: _copy(name, base) for name in PROJECTS}
    lock = threading.Lock()
    clock = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(lambda d: d.deliver(), deliveries.values()))
    total = round(time.monotonic() - clock, 1)
    with lock:
        table = [d.figures() for d in deliveries.values()]
        (base / "zoo.json").write_text(
            json.dumps({"total_seconds": total, "workers": WORKERS, "projects": table}, indent=1)
        )
        print(f"\nzoo: {len(table)} projects in {total} s with {WORKERS} workers ({base})")
        for row in table:
            print("  " + json.dumps(row))
    yield deliveries
    for delivery in deliveries.values():
        delivery.clean()


def _explain(delivery: Delivery) -> str:
    if delivery.error:
        return delivery.error
    last = delivery.runs[-1] if delivery.runs else None
    return (last.stdout[-4000:] + last.stderr[-3000:]) if last else "not run"


def _holdout(delivery: Delivery) -> tuple[pd.DataFrame, Any, list[str]]:
    train = delivery.out(2) / "train"
    meta = json.loads((train / "model.json").read_text("utf-8"))
    names = [str(f["name"]) for f in meta["features"]]
    frame = pd.read_csv(train / "holdout.csv").head(20)
    with entrypoint.project_path(delivery.root):
        model = projectcode.load_project_model(
            train / "model.skops", delivery.root, meta.get("declared_types") or []
        )
    return frame[names], model, names


def _post(port: int, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _v2_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """One v2 input per column: numbers as FP64, anything else as BYTES (strings)."""
    inputs = []
    for name in frame.columns:
        column = frame[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        values = json.loads(column.to_json(orient="values"))
        inputs.append(
            {
                "name": str(name),
                "shape": [len(frame)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": values,
            }
        )
    return {"inputs": inputs}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return rows


@pytest.mark.parametrize("name", PROJECTS)
def test_the_zoo_project_is_delivered_by_mlcd_run_with_a_canary(
    zoo: dict[str, Delivery], name: str
) -> None:
    delivery = zoo[name]
    assert len(delivery.runs) == 2, _explain(delivery)
    for number, done in enumerate(delivery.runs, 1):
        assert done.returncode == 0, f"run {number}:\n" + _explain(delivery)
    for stage in ("train", "evaluate", "build", "scan", "release", "deploy-staging"):
        assert delivery.result(2, stage)["status"] == "pass", stage
    build = delivery.result(2, "build")["details"]
    assert build["contract"]["passed"] is True
    assert build["contract"]["agree"] == build["contract"]["rows"] > 0
    # the contract test sent every held-out row in each body form and the v2 route
    forms = build["contract"]["forms"]
    assert {"records", "instances", "v2 columns"} <= set(forms), forms
    assert set(forms.values()) == {build["contract"]["rows"]}, forms
    deploy = delivery.result(2, "deploy-staging")["details"]
    assert deploy["strategy"] == "canary", deploy
    assert deploy["outcome"] == "promoted", deploy
    state = json.loads((delivery.root / "state" / "staging" / "state.json").read_text("utf-8"))
    assert state["stable"]["version"] == delivery.result(2, "release")["details"]["version"]

    # the live release answers as the model does in process, in both body forms
    features, model, names = _holdout(delivery)
    expected = json.loads(pd.Series(list(model.predict(features))).to_json(orient="records"))
    for body in (
        {"records": _records(features)},
        {"instances": [[row[n] for n in names] for row in _records(features)]},
    ):
        status, data, _ = post(delivery.port, json.dumps(body).encode())
        assert status == 200, data
        answer = json.loads(data)
        assert answer["predictions"] == expected, (list(body), answer["predictions"], expected)
    # and the Open Inference Protocol route, one input per column
    model_name = json.loads((delivery.out(2) / "train" / "model.json").read_text())["name"]
    status, v2 = _post(delivery.port, f"/v2/models/{model_name}/infer", _v2_columns(features))
    assert status == 200, v2
    assert v2["outputs"][0]["name"] == "predict"
    assert v2["outputs"][0]["data"] == expected

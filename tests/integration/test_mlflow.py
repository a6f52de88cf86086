"""MLflow as teams run it, against mlcd: a real `mlflow server` (SQLite backend store, local
artifact root, started once per session) as registry and tracking server, and MLflow's own
scoring client (`ScoringServerClient`, what `mlflow models serve` users call) against
`mlcd serve` and against built images, which also play SageMaker's container contract."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcd import cli, runreport, typedrows
from mlcd.config import load_config
from mlcd.evidence import Bundle
from mlcd.github import comment
from mlcd.ports import free_port
from mlcd.registry import CHAMPION, open_registry
from mlcd.rollout import gates
from mlcd.serve.client import Client
from mlcd.serve.model import load
from tests.integration.images import ROOT, Built, Project
from tests.integration.test_serve_http import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` with a SQLite store and a local artifact folder it serves itself."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root}/db.sqlite",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers stop with it
        # no background job runner (huey consumers): nothing here uses MLflow's jobs
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
            time.sleep(1)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        with contextlib.suppress(ProcessLookupError):  # workers that outlived the server
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()


def _example(root: Path, uri: str, name: str, c: float) -> Path:
    for item in ("train.py", "data"):
        src = ROOT / "model" / item
        if not (root / item).exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    config = root / "mlcd.yaml"
    config.write_text(
        f"version: 1\nproject: {name}\n"
        "model: {task: classification, entrypoint: train.py:build_model, data: data/train.csv,"
        f" target: diagnosis, params: {{C: {c}}}}}\n"
        "evaluate: {thresholds: {accuracy: {min: 0.9}}, bootstrap-samples: 100,"
        " compare-to: champion, max-regression: {accuracy: 0.2}}\n"
        f"registry: {{backend: mlflow, tracking-uri: '{uri}'}}\n"
    )
    return config


def _stage(config: Path, stage: str) -> dict[str, Any]:
    out = config.parent / ".mlcd"
    code = cli.main([stage, "--config", str(config), "--out", str(out)])
    result: dict[str, Any] = json.loads((out / stage / "result.json").read_text())
    assert code == 0, result
    return result


def test_register_compare_promote_and_roll_back_in_mlflows_registry(
    mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.models import get_model_info

    monkeypatch.setenv("GITHUB_SHA", "e" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = f"mlf-{uuid.uuid4().hex[:8]}"
    config = _example(tmp_path, mlflow_uri, name, 1.0)
    train = _stage(config, "train")
    shutil.copy(tmp_path / ".mlcd" / "train" / "model.skops", tmp_path / "v1.skops")
    first = _stage(config, "evaluate")
    assert first["details"]["registry"]["version"] == "v1"
    assert first["details"]["comparison"]["status"] == "none"  # no champion yet

    mlflow = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    version = mlflow.get_model_version(name, "1")
    assert version.tags["mlcd.verdict"] == "passed"
    assert version.tags["mlcd.fingerprint"] == train["details"]["fingerprint"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # for MLflow's module functions
    info = get_model_info(f"models:/{name}/1")  # MLflow reads the MLmodel mlcd wrote
    meta = json.loads((tmp_path / ".mlcd" / "train" / "model.json").read_text())
    assert info.signature.inputs.input_names() == [f["name"] for f in meta["features"]]
    assert "mlcd" in info.flavors

    # train and evaluate are runs, with metrics, intervals, dataset and documents
    run = mlflow.get_run(first["details"]["tracking"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["accuracy"] == pytest.approx(first["metrics"]["accuracy"])
    low, high = first["details"]["intervals"]["accuracy"]
    assert run.data.metrics["accuracy_ci_low"] == pytest.approx(low)
    assert run.data.metrics["accuracy_ci_high"] == pytest.approx(high)
    assert run.data.params["params.C"] == "1.0"
    assert run.data.tags["mlcd.verdict"] == "passed"
    assert run.inputs.dataset_inputs[0].dataset.digest == meta["data_sha256"][:36]
    files = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert {"report.html", "model_card.md", "verdict.json"} <= files
    assert train["details"]["tracking"]["url"].startswith(mlflow_uri)
    bundle = Bundle(tmp_path / ".mlcd")
    pr_comment = comment.render(bundle, comment.RunInfo(repository="o/r", run_id="1"))
    assert f"[MLflow run: evaluate]({first['details']['tracking']['url']})" in pr_comment
    page = runreport.render_html(bundle, None)
    assert f'href="{train["details"]["tracking"]["url"]}"' in page

    # a production deploy moves MLflow's champion alias (what deploy calls: set_alias, and
    # gates.record_deployment for a release that went live)
    registry = open_registry(load_config(config))
    registry.set_alias(CHAMPION, "v1")
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"

    # a new candidate is compared with the model MLflow says is in production
    _example(tmp_path, mlflow_uri, name, 0.05)
    _stage(config, "train")
    second = _stage(config, "evaluate")
    assert second["details"]["comparison"]["status"] == "compared", second["details"]
    assert second["details"]["comparison"]["champion"] == "v1"
    assert second["details"]["registry"]["version"] == "v2"

    image = "127.0.0.1:5000/x@sha256:" + "b" * 64
    registry.attach("v2", "image_digest", image)
    release = gates.Release(
        version="0.2.0",
        image=image,
        model_version="v2",
        evaluate_passed=True,
        evaluate_source="evaluate",
        scan_passed=True,
        scan_source="scan",
    )
    gates.record_deployment(registry, release, "production", strategy="blue-green", champion=True)
    assert mlflow.get_model_version_by_alias(name, "champion").version == "2"  # promoted
    deployed = json.loads(mlflow.get_model_version(name, "2").tags["mlcd.deployments"])
    assert [(d["env"], d["release"]) for d in deployed] == [("production", "0.2.0")]
    assert mlflow.get_model_version(name, "2").tags["mlcd.image_digest"].endswith("b" * 64)
    found = registry.find_by_image_digest("sha256:" + "b" * 64)
    assert found is not None
    assert found.version == "v2"
    registry.set_alias(CHAMPION, "v1")  # `mlcd rollback production` points it back
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
    champion = registry.alias(CHAMPION)
    assert champion is not None
    assert champion.version == "v1"
    assert [h["version"] for h in registry.alias_history(CHAMPION)] == ["v1", "v2", "v1"]
    assert registry.claim_release("0.1.0", commit="e" * 40)  # one release job takes it
    assert not registry.claim_release("0.1.0", commit="f" * 40)
    model = registry.model_file("v1", tmp_path / "download")
    assert model.read_bytes() == (tmp_path / "v1.skops").read_bytes()


_WRITER = """
import json, sys
from pathlib import Path
from mlcd.registry.mlflow import MLflowRegistry
from mlcd.tools.mlflow import MLflow
registry = MLflowRegistry(MLflow.from_env(sys.argv[1]), sys.argv[2])
model = Path(sys.argv[3])
made = []
for i in range(3):
    meta = {"name": "race", "task": "regression", "fingerprint": f"{sys.argv[4]}-{i}",
            "features": [{"name": "x", "kind": "number", "min": 0.0}]}
    made.append(registry.register(model_file=model, metadata=meta, metrics={}, verdict=None)
                .version)
print(json.dumps(made))
"""


def test_two_processes_registering_at_once_never_share_a_version(
    mlflow_uri: str, tmp_path: Path
) -> None:
    from mlcd.registry.mlflow import MLflowRegistry
    from mlcd.tools.mlflow import MLflow

    name = f"race-{uuid.uuid4().hex[:8]}"
    model = tmp_path / "model.skops"
    model.write_bytes(b"not a real model; the registry stores bytes")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, mlflow_uri, name, str(model), who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    made: list[str] = []
    for proc in writers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        made += json.loads(out.strip().splitlines()[-1])
    assert sorted(made, key=lambda v: int(v[1:])) == [f"v{n}" for n in range(1, 7)]
    registry = MLflowRegistry(MLflow.from_env(mlflow_uri), name)
    listed = registry.versions()
    assert [v.version for v in listed] == [f"v{n}" for n in range(1, 7)]
    assert len({v.fingerprint for v in listed}) == 6  # each version is one writer's model


# ----------------------------------------------------------------- MLflow's scoring client


def _scoring_predictions(port: int, frame: Any) -> list[Any]:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    client = ScoringServerClient("127.0.0.1", port)
    client.wait_server_ready(timeout=120)
    response = client.invoke(frame)
    return list(response.get_predictions(predictions_format="ndarray").tolist())


@dataclass
class Case:
    folder: Path  # the train folder (model.skops, model.json, holdout.csv)
    frame: Any  # held-out rows as the DataFrame a team's client sends
    expected: list[Any]


def _case(folder: Path, target: str) -> Case:
    meta = json.loads((folder / "model.json").read_text())
    frame = typedrows.holdout_frame(folder / "holdout.csv", meta["features"], target)
    model = load(folder)
    frame = frame[model.feature_names].head(40)
    return Case(folder, frame, model.estimator.predict(frame).tolist())


@pytest.fixture(scope="module")
def example_case(project: Project) -> Case:
    return _case(project.out / "train", "diagnosis")


@pytest.fixture(scope="module")
def mixed_case(built: Built) -> Case:
    return _case(built.out / "train", "label")


def test_mlflows_scoring_client_against_mlcd_serve(example_case: Case, mixed_case: Case) -> None:
    for case in (example_case, mixed_case):
        server = Server(case.folder)
        try:
            assert _scoring_predictions(server.port, case.frame) == case.expected
        finally:
            assert server.stop() == 0


@dataclass
class Container:
    port: int
    client: Client


@contextmanager
def _run_image(image: str) -> Iterator[Container]:
    """`docker run IMAGE serve`, as SageMaker starts a container, port 8080 published."""
    name = f"mlcd-test-sm-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::8080", image, "serve"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        port = int(
            subprocess.run(
                ["docker", "port", name, "8080/tcp"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split(":")[-1]
        )
        client = Client("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/ping").status == 200:
                    break
            except OSError:
                client.close()
            assert time.monotonic() < deadline, "the image never answered GET /ping"
            time.sleep(0.3)
        yield Container(port, client)
        client.close()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _csv(frame: Any, *, header: bool) -> bytes:
    return str(frame.to_csv(index=False, header=header)).encode()


def test_built_images_keep_mlflows_protocol_and_sagemakers_contract(
    project: Project, built: Built, example_case: Case, mixed_case: Case
) -> None:
    images = (
        (project.image_id, example_case),
        (built.result["details"]["image_id"], mixed_case),
    )
    for image, case in images:
        with _run_image(str(image)) as container:
            assert _scoring_predictions(container.port, case.frame) == case.expected
            client = container.client
            ping = client.get("/ping")
            assert ping.status == 200
            split = json.loads(case.frame.to_json(orient="split", index=False))
            reply = client.request(
                "POST",
                "/invocations",
                json.dumps({"dataframe_split": split}).encode(),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            assert reply.status == 200, reply.body[:500]
            assert reply.json() == {"predictions": case.expected}
            for header in (True, False):  # pandas' to_csv, and SageMaker's header-less rows
                reply = client.request(
                    "POST",
                    "/invocations",
                    _csv(case.frame, header=header),
                    headers={"Content-Type": "text/csv", "Accept": "text/csv"},
                )
                assert reply.status == 200, reply.body[:500]
                assert reply.headers["content-type"].startswith("text/csv")
                assert reply.body.decode().splitlines() == [str(v) for v in case.expected]
            bad = client.post_json("/invocations", {"rows": []})
            assert bad.status == 400
            assert bad.json()["error_code"] == "BAD_REQUEST"


def test_numpy_rows_through_the_scoring_client(example_case: Case) -> None:
    """An array sent as `inputs` (what the client makes of a NumPy array)."""
    server = Server(example_case.folder)
    try:
        rows = np.asarray(example_case.frame, dtype=float)
        assert _scoring_predictions(server.port, rows) == example_case.expected
    finally:
        assert server.stop() == 0


def test_an_unreachable_tracking_server_is_a_reason_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracking is a record, not a gate: train passes and says what went wrong."""
    monkeypatch.setenv("GITHUB_SHA", "e" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = _example(tmp_path, nobody, f"mlf-{uuid.uuid4().hex[:8]}", 1.0)
    config.write_text(
        config.read_text().replace("backend: mlflow", "backend: local")
        + f"tracking: {{uri: '{nobody}'}}\n"
    )
    result = _stage(config, "train")
    assert result["status"] == "pass"
    tracked = result["details"]["tracking"]
    assert tracked["uri"] == nobody
    assert "failed after 2 attempts" in tracked["error"], tracked
    assert any(r.startswith(f"MLflow tracking at {nobody} failed") for r in result["reasons"])

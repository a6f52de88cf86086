"""`mlcd init` on three repositories it was not written for: three shapes of the model zoo
(a ColumnTransformer by column names, gaps in the data, a free-text column), each copied
without its mlcd.yaml into a fresh git repository. init writes a config that `mlcd
validate` (and `--github`, against the caller workflow it wrote) accepts, and `mlcd run
--target local` delivers it: lint, test, train, evaluate, build, scan, release, then the
docker-host environments rehearsed on this engine (staging, then production, which requires
it), and the production router answers a prediction.

One session fixture; the three deliveries run side by side (a delivery mostly waits for
Docker). A first deploy to an empty environment goes straight to the release, so the
rollout settings init writes (30 s canary intervals) cost no time here.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlcd.ports import free_port
from mlcd.tools.nginx import Nginx
from tests.conftest import ROOT
from tests.integration.trivydb import make_trivy_db

pytestmark = pytest.mark.integration

SHAPES = ("columns", "gaps", "text")
BASE = "local/python:3.11-bookworm"


@dataclass
class Repo:
    shape: str
    root: Path
    project: str
    ports: dict[str, int]
    init: subprocess.CompletedProcess[str] | None = None
    validate: subprocess.CompletedProcess[str] | None = None
    github: subprocess.CompletedProcess[str] | None = None
    run: subprocess.CompletedProcess[str] | None = None


def _mlcd(repo: Repo, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcd", *args],
        cwd=repo.root,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **env},
        timeout=1800,
        check=False,
    )


def _deliver(repo: Repo, trivy: Path) -> None:
    env = {
        "MLCD_TRIVY_CACHE": str(trivy),
        "MLCD_STAGING_PORT": str(repo.ports["staging"]),
        "MLCD_PRODUCTION_PORT": str(repo.ports["production"]),
    }
    repo.init = _mlcd(repo, "init", "--base-image", BASE, "--project", repo.project, env=env)
    if repo.init.returncode != 0:
        return
    repo.validate = _mlcd(repo, "validate", env=env)
    repo.github = _mlcd(repo, "validate", "--github", env=env)
    repo.run = _mlcd(repo, "run", "--target", "local", env=env)


def _clean(repo: Repo) -> None:
    for env in ("staging", "production"):
        Nginx(repo.root / ".mlcd-state" / env / "nginx").stop()
    names = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=mlcd.project={repo.project}",
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
            f"127.0.0.1:5000/{repo.project}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for tag in tags:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Repo]]:
    base = tmp_path_factory.mktemp("init")
    trivy = make_trivy_db(base / "trivy-cache", debian={}, pip={})
    repos = []
    for shape in SHAPES:
        root = base / shape
        shutil.copytree(ROOT / "tests" / "zoo" / shape, root)
        (root / "mlcd.yaml").unlink()
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        project = f"init-{shape}-{uuid.uuid4().hex[:6]}"
        ports = {"staging": free_port(), "production": free_port()}
        repos.append(Repo(shape, root, project, ports))
    try:
        with ThreadPoolExecutor(max_workers=len(repos)) as pool:
            list(pool.map(lambda r: _deliver(r, trivy), repos))
        yield repos
    finally:
        for repo in repos:
            _clean(repo)


def _show(done: subprocess.CompletedProcess[str] | None) -> str:
    if done is None:
        return "did not run"
    return f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("shape", SHAPES)
def test_init_writes_a_config_that_validates_and_delivers(
    initialised: list[Repo], shape: str
) -> None:
    repo = next(r for r in initialised if r.shape == shape)
    assert repo.init is not None
    assert repo.init.returncode == 0, _show(repo.init)
    config = yaml.safe_load((repo.root / "mlcd.yaml").read_text())
    assert config["model"]["entrypoint"] == "train.py:build_model"
    assert config["model"]["data"] == "data.csv"
    assert config["model"]["task"] == "classification"
    assert {e["target"] for e in config["environments"].values()} == {"docker-host"}
    workflow = yaml.safe_load((repo.root / ".github" / "workflows" / "ml.yml").read_text())
    job = workflow["jobs"]["deliver"]
    assert job["uses"].endswith("/.github/workflows/deliver.yml@v" + _version())
    assert job["permissions"]["actions"] == "read"
    assert job["permissions"]["id-token"] == "write"
    assert set(job["secrets"]) >= {"deploy-ssh-key", "deploy-known-hosts"}
    assert "MLCD_DEPLOY_SSH_KEY" in repo.init.stdout
    assert "https://docs.github.com/" in repo.init.stdout
    assert repo.validate is not None
    assert repo.validate.returncode == 0, _show(repo.validate)
    assert repo.github is not None
    assert repo.github.returncode == 0, _show(repo.github)
    assert repo.run is not None
    assert repo.run.returncode == 0, _show(repo.run)
    run = json.loads((repo.root / ".mlcd" / "run.json").read_text())
    statuses = {s["stage"]: s["status"] for s in run["stages"]}
    assert statuses == {
        "lint": "pass",
        "test": "pass",
        "train": "pass",
        "evaluate": "pass",
        "build": "pass",
        "scan": "pass",
        "release": "pass",
        "deploy-staging": "pass",
        "deploy-production": "pass",
    }
    # the production router answers with the released model
    holdout = (repo.root / ".mlcd" / "train" / "holdout.csv").read_text().splitlines()
    header, first = holdout[0].split(","), holdout[1]
    features = header[:-1]
    row = dict(zip(features, _values(first, len(header))[:-1], strict=True))
    connection = http.client.HTTPConnection("127.0.0.1", repo.ports["production"], timeout=30)
    connection.request(
        "POST",
        "/predict",
        body=json.dumps({"records": [row]}),
        headers={"Content-Type": "application/json"},
    )
    answer = connection.getresponse()
    body = json.loads(answer.read())
    assert answer.status == 200, body
    assert len(body["predictions"]) == 1


def test_a_second_init_overwrites_nothing(initialised: list[Repo]) -> None:
    repo = initialised[0]
    before = (repo.root / "mlcd.yaml").read_text()
    again = _mlcd(repo, "init", "--project", "another-name", env={})
    assert again.returncode == 0, _show(again)
    assert "kept (exists; --force overwrites) mlcd.yaml" in again.stdout
    assert (repo.root / "mlcd.yaml").read_text() == before


def _values(line: str, count: int) -> list[object]:
    import csv

    values: list[object] = []
    for cell in next(csv.reader([line])):
        try:
            values.append(float(cell))
        except ValueError:
            values.append(cell if cell != "" else None)
    assert len(values) == count
    return values


def _version() -> str:
    from mlcd import __version__

    return __version__

"""Acceptance with real mlcd images: train → evaluate → build → release, then a canary.

Two models of the example data, built into real serving images by `mlcd build`: the stable
one fails on about 0.5 % of rows, the candidate on about 5 % (mlcd.rollout.faults.FailSome,
a transformer in mlcd's own package so the image can load it; it starts failing after its
warm-up calls, so evaluation and the build's contract test pass). The candidate's canary is
rolled back automatically and all traffic stays on stable.

The scan stage needs a Trivy vulnerability database, which cannot be downloaded here, so
`mlcd scan` is not run; the release records are made by `mlcd release` and the scan outcome
is recorded in the registry (`scan` attachment) as a passed scan would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcd.ports import free_port
from mlcd.registry import LocalRegistry
from mlcd.tools.nginx import Nginx
from tests.integration.deploy.conftest import ROOT
from tests.integration.deploy.helpers import post

TRAIN = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcd.rollout.faults import FailSome


def build_model(C: float = 1.0, fail: float = 0.0) -> Pipeline:
    return Pipeline([
        ("fault", FailSome(rate=fail)),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(C=C, max_iter=1000)),
    ])
"""


class RealProject:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"dreal-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {
            **os.environ,
            "MLCD_REGISTRY_PATH": str(root / "registry"),
            "MLCD_STATE_DIR": str(root / "state"),
            "MLCD_STAGING_PORT": str(self.port),
        }

    def config(self, fail: float) -> Path:
        path = self.root / f"mlcd-{fail}.yaml"
        data = {
            "version": 1,
            "project": self.name,
            "model": {
                "task": "classification",
                "entrypoint": "train.py:build_model",
                "data": "data/train.csv",
                "target": "diagnosis",
                "params": {"fail": fail},
            },
            "evaluate": {"thresholds": {"accuracy": {"min": 0.9}}, "bootstrap-samples": 100},
            "image": {"name": f"127.0.0.1:5000/{self.name}", "base": "local/python:3.11-bookworm"},
            "environments": {
                "staging": {
                    "strategy": "canary",
                    "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 200},
                    "analysis": {
                        "max-error-rate": 0.01,
                        "max-p99-latency-ms": 2000,
                        "inconclusive-limit": 10,
                    },
                    "load-test": {"rps": 150},
                }
            },
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def mlcd(self, fail: float, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcd",
                *args,
                "--config",
                str(self.config(fail)),
                "--out",
                str(self.root / f"out-{fail}"),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def release(self, fail: float) -> str:
        for stage in ("train", "evaluate", "build", "release"):
            done = self.mlcd(fail, stage)
            assert done.returncode == 0, f"{stage}: {done.stdout}\n{done.stderr}"
        result = json.loads((self.root / f"out-{fail}" / "release" / "result.json").read_text())
        details = result["details"]
        registry = LocalRegistry(self.root / "registry")
        registry.attach(details["model_version"], "scan", {"status": "pass"})
        return str(details["version"])


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealProject]:
    root = tmp_path_factory.mktemp("deploy-real")
    shutil.copytree(ROOT / "model" / "data", root / "data")
    (root / "train.py").write_text(TRAIN)
    project = RealProject(root)
    yield project
    Nginx(root / "state" / "staging" / "nginx").stop()
    names = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=mlcd.project={project.name}",
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
            f"127.0.0.1:5000/{project.name}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for tag in tags:  # only this test's own images
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def test_real_release_failing_on_5_percent_is_rolled_back(real: RealProject) -> None:
    stable = real.release(0.005)
    candidate = real.release(0.05)
    first = real.mlcd(0.05, "deploy", "staging", "--release", stable)
    assert first.returncode == 0, first.stdout + first.stderr
    done = real.mlcd(0.05, "deploy", "staging", "--release", candidate)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((real.root / "out-0.05" / "deploy-staging" / "result.json").read_text())
    assert result["details"]["outcome"] == "rolled back"
    measurements: list[dict[str, Any]] = result["details"]["measurements"]
    reached = next(
        (i for i, m in enumerate(measurements) if m["metrics"].get("step_requests", 0) >= 200),
        len(measurements) - 1,
    )
    assert len(measurements) - 1 <= reached + 2
    assert "error rate" in measurements[-1]["reasons"][0]
    state = json.loads((real.root / "state" / "staging" / "state.json").read_text())
    assert state["stable"]["version"] == stable
    assert state["rollout"] is None
    # every answer now comes from the stable release (the server reports its version)
    row = dict.fromkeys(
        (real.root / "data" / "train.csv").read_text().splitlines()[0].split(",")[:-1], 14.0
    )
    versions = set()
    for _ in range(40):
        status, data, _ = post(real.port, json.dumps({"records": [row]}).encode())
        if status == 200:
            versions.add(json.loads(data)["model_version"])
    assert versions == {stable}
    registry = LocalRegistry(real.root / "registry")
    deployments = [d for v in registry.versions() for d in v.attachments.get("deployments", [])]
    assert [(d["release"], d["env"]) for d in deployments] == [(stable, "staging")]

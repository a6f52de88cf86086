"""The serving images that several test files use, built once per session.

`project`: the example model (model/train.py) trained, evaluated and built; `built`: the
mixed-type project of tests/support/mixed.py trained and built. conftest.py imports both
fixtures, so every file shares one build of each (a fixture imported into a test module
would be built again for that module).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.mixed import write_project

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"


@dataclass
class Project:
    root: Path
    config: Path
    out: Path
    env: dict[str, str]
    name: str
    # the image the fixture built (later tests may rebuild or break build/result.json)
    image_id: str = ""

    def mlcd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcd",
                *args,
                "--config",
                str(self.config),
                "--out",
                str(self.out),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"mlcd {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def result(self, stage: str) -> dict[str, object]:
        return json.loads((self.out / stage / "result.json").read_text())


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("imgproj")
    for item in ("train.py", "data"):
        src = ROOT / "model" / item
        if src.is_dir():
            shutil.copytree(src, root / item)
        else:
            shutil.copy(src, root / item)
    name = f"srvtest-{uuid.uuid4().hex[:8]}"
    config = root / "mlcd.yaml"
    config.write_text(
        f"version: 1\nproject: {name}\n"
        "model: {task: classification, entrypoint: train.py:build_model, data: data/train.csv,"
        " target: diagnosis, params: {C: 1.0}}\n"
        "evaluate: {thresholds: {accuracy: {min: 0.9}}, bootstrap-samples: 100}\n"
        f"image: {{name: {REGISTRY}/{name}, base: local/python:3.11-bookworm}}\n"
    )
    env = {**os.environ, "MLCD_REGISTRY_PATH": str(root / "registry"), "NO_COLOR": "1"}
    proj = Project(root, config, root / ".mlcd", env, f"{REGISTRY}/{name}")
    proj.mlcd("train")
    proj.mlcd("evaluate")
    proj.mlcd("build")
    proj.image_id = str(proj.result("build")["details"]["image_id"])  # type: ignore[index]
    yield proj
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", proj.name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for ref in listed:  # only this test's own tags
        subprocess.run(["docker", "image", "rm", ref], capture_output=True, check=False)


@dataclass
class Built:
    root: Path
    out: Path
    name: str
    result: dict[str, Any]


def _mlcd(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcd",
            *args,
            "--config",
            str(root / "mlcd.yaml"),
            "--out",
            str(root / ".mlcd"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, f"mlcd {args[0]}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("mixedimg")
    name = f"srvmixed-{uuid.uuid4().hex[:8]}"
    write_project(root, project=name, image=f"{REGISTRY}/{name}")
    env = {**os.environ, "MLCD_REGISTRY_PATH": str(root / "registry"), "NO_COLOR": "1"}
    _mlcd(root, "train", env=env)
    _mlcd(root, "build", env=env)
    result = json.loads((root / ".mlcd" / "build" / "result.json").read_text())
    yield Built(root, root / ".mlcd", f"{REGISTRY}/{name}", result)
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"{REGISTRY}/{name}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for ref in listed:  # only this test's own tags
        subprocess.run(["docker", "image", "rm", ref], capture_output=True, check=False)

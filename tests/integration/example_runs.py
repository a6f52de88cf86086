"""The example project trained and evaluated twice through the real CLI, the second time
against the first as champion: the evaluation's outputs (with plots) that several
integration tests read. The session fixture `runs` (conftest.py) makes it once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlcd.registry import LocalRegistry

ROOT = Path(__file__).resolve().parents[2]
MLCD = [sys.executable, "-m", "mlcd"]


@dataclass(frozen=True)
class Runs:
    project: Path
    first: Path  # no champion yet
    second: Path  # the first run's model is the champion
    seconds: float  # wall time of the first `train && evaluate`


def mlcd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MLCD, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def train_and_evaluate_twice(base: Path) -> Runs:
    project = base / "model"
    shutil.copytree(ROOT / "model", project, ignore=shutil.ignore_patterns(".mlcd*"))
    env = {**os.environ, "MLCD_REGISTRY_PATH": str(base / "registry")}
    config = str(project / "mlcd.yaml")
    first, second = base / "first", base / "second"
    clock = time.monotonic()
    for step in ("train", "evaluate"):
        done = mlcd(step, "--config", config, "--out", str(first), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    seconds = time.monotonic() - clock
    LocalRegistry(base / "registry").set_alias("champion", "v1")
    for step in ("train", "evaluate"):
        done = mlcd(step, "--config", config, "--out", str(second), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    return Runs(project, first, second, seconds)

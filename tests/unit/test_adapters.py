"""Adapters' parsing, with canned program output (no program is started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools import pytest as pytest_tool
from mlcd.tools import ruff
from mlcd.tools.base import ToolResult, find_program, python_module_argv


def canned(monkeypatch: pytest.MonkeyPatch, *results: ToolResult) -> list[list[str]]:
    """Make ruff.run return these results in turn; return the argv list it was called with."""
    calls: list[list[str]] = []
    queue = list(results)

    def fake_run(argv: list[str], **_kwargs: object) -> ToolResult:
        calls.append(list(argv))
        return queue.pop(0)

    monkeypatch.setattr(ruff, "run", fake_run)
    return calls


def test_format_check_reads_ruffs_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = json.dumps([{"filename": str(tmp_path / "a.py"), "location": {"row": 7, "column": 1}}])
    calls = canned(monkeypatch, ToolResult((), 1, out, ""))
    assert ruff.format_check([tmp_path], cwd=tmp_path) == [ruff.Unformatted(tmp_path / "a.py", 7)]
    assert "--output-format=json" in calls[0]


def test_format_check_falls_back_to_older_ruffs_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = canned(
        monkeypatch,
        ToolResult((), 2, "", "error: unexpected argument '--output-format' found"),
        ToolResult((), 1, "Would reformat: src/b.py\n1 file would be reformatted\n", ""),
    )
    assert ruff.format_check([tmp_path], cwd=tmp_path) == [
        ruff.Unformatted((tmp_path / "src" / "b.py").resolve(), 1)
    ]
    assert "--output-format=json" not in calls[1]


def test_ruff_that_cannot_run_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canned(monkeypatch, ToolResult((), 2, "", "ruff failed\n  Cause: bad config ruff.toml"))
    with pytest.raises(UserInputError, match="ruff format could not run: ruff failed"):
        ruff.format_check([tmp_path], cwd=tmp_path)


def test_check_reads_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    item = {
        "code": "F401",
        "message": "`os` imported but unused",
        "filename": str(tmp_path / "a.py"),
        "location": {"row": 3, "column": 8},
        "url": "https://docs.astral.sh/ruff/rules/unused-import",
    }
    canned(monkeypatch, ToolResult((), 0, json.dumps([item]), ""))
    (finding,) = ruff.check([tmp_path], cwd=tmp_path)
    assert (finding.code, finding.line, finding.column) == ("F401", 3, 8)


def test_a_missing_python_tool_is_exit_3_with_how_to_install() -> None:
    with pytest.raises(EnvironmentMissing) as caught:
        python_module_argv("no_such_module_mlcd", package="no-such-package")
    assert caught.value.exit_code == 3
    assert caught.value.hint is not None
    assert "pip install no-such-package" in caught.value.hint


def test_a_missing_program_is_exit_3_with_the_hint() -> None:
    with pytest.raises(EnvironmentMissing, match="`no-such-program-mlcd` is not installed"):
        find_program("no-such-program-mlcd", hint="apt-get install it")


def test_coverage_leaves_out_the_tests(tmp_path: Path) -> None:
    data = {
        "files": {
            "model.py": {"summary": {"covered_lines": 6, "num_statements": 10}},
            "tests/test_model.py": {"summary": {"covered_lines": 30, "num_statements": 30}},
            "pkg/mod.py": {
                "summary": {
                    "covered_lines": 4,
                    "num_statements": 4,
                    "covered_branches": 1,
                    "num_branches": 2,
                }
            },
        }
    }
    percent = pytest_tool.coverage_percent(data, cwd=tmp_path, exclude=[tmp_path / "tests"])
    assert percent == pytest.approx(100 * 11 / 16)
    nothing = pytest_tool.coverage_percent(data, cwd=tmp_path, exclude=[tmp_path])
    assert nothing is None


def test_junit_cases_get_pytest_node_ids(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.test_m" name="test_ok" file="tests/test_m.py" line="3"/>
<testcase classname="tests.test_m.TestA" name="test_bad" file="tests/test_m.py" line="9">
  <failure message="assert 1 == 2&#10;more">trace</failure></testcase>
<testcase classname="tests.test_m" name="test_skip" file="tests/test_m.py">
  <skipped message="later"/></testcase>
<testcase classname="" name="tests.test_broken"><error message="collection failure"/></testcase>
</testsuite></testsuites>""",
        "utf-8",
    )
    cases = pytest_tool._parse_junit(junit)
    assert [(c.name, c.outcome, c.message) for c in cases] == [
        ("tests/test_m.py::test_ok", "passed", ""),
        ("tests/test_m.py::TestA::test_bad", "failed", "assert 1 == 2"),
        ("tests/test_m.py::test_skip", "skipped", "later"),
        ("tests.test_broken", "error", "collection failure"),
    ]

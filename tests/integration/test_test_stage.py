"""`mlcd test` with the real pytest and coverage: failed tests named, the coverage gate,
and a test stage that finds no tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcd.cli import main
from tests.integration.conftest import Project

CONFIG = """\
version: 1
project: fixture
model: {task: regression, entrypoint: "calc.py:build", data: d.csv, target: y}
test: {paths: [tests], min-coverage: MIN}
"""

CALC = '''\
"""A small module to test."""


def build() -> None:
    return None


def add(a: int, b: int) -> int:
    return a + b


def sign(x: int) -> str:
    if x > 0:
        return "positive"
    if x < 0:
        return "negative"
    return "zero"
'''

TESTS = """\
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calc import add, build, sign


def test_add() -> None:
    assert add(2, 2) == 4


def test_build() -> None:
    assert build() is None


def test_sign() -> None:
    assert sign(1) == "positive"
    assert sign(-1) == "negative"
    assert sign(0) == "zero"
"""

FAILING = (
    TESTS
    + """

class TestBroken:
    def test_add_is_wrong(self) -> None:
        assert add(1, 1) == 3
"""
)


def project(make_project: Project, *, minimum: int, tests: str) -> Path:
    return make_project(
        {
            "mlcd.yaml": CONFIG.replace("MIN", str(minimum)),
            "calc.py": CALC,
            "tests/test_calc.py": tests,
        }
    )


def run_test(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = path.parent.parent / "out"
    code = main(["test", "--config", str(path / "mlcd.yaml"), "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, out / "test"


def test_passing_tests_with_enough_coverage(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(make_project, minimum=90, tests=TESTS)
    code, out, folder = run_test(path, capsys)
    assert code == 0, out
    assert "3 passed, 0 failed, 0 errors, 0 skipped; coverage 100.0% (min 90%)" in out
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["metrics"]["coverage_percent"] == 100.0
    assert result["artifacts"] == {"junit": "test/junit.xml", "coverage": "test/coverage.json"}
    assert (folder / "junit.xml").is_file()
    assert not (path / ".coverage").exists()  # coverage data stays in the run folder


def test_one_failing_test_is_named_in_the_summary(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(make_project, minimum=0, tests=FAILING)
    code, out, folder = run_test(path, capsys)
    assert code == 1
    node = "tests/test_calc.py::TestBroken::test_add_is_wrong"
    assert f"FAILED {node}: assert 2 == 3" in out
    summary = (folder / "summary.md").read_text("utf-8")
    assert summary.startswith("### ❌ test: 3 passed, 1 failed, 0 errors")
    assert f"- `{node}` — assert 2 == 3" in summary
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["status"] == "fail"
    assert result["metrics"]["failed"] == 1


def test_coverage_below_the_minimum_fails_with_the_figure(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without test_sign, 5 of calc.py's 10 statements never run (the body of sign): 50%.
    tests = TESTS[: TESTS.index("def test_sign")]
    path = project(make_project, minimum=80, tests=tests)
    code, out, folder = run_test(path, capsys)
    assert code == 1
    assert "2 passed, 0 failed" in out
    assert "coverage 50.0% < minimum 80%" in out
    summary = (folder / "summary.md").read_text("utf-8")
    assert "Coverage: **50.0%** (minimum 80%)" in summary
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["metrics"]["coverage_percent"] == 50.0


def test_no_tests_at_all_is_exit_2(
    make_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project(make_project, minimum=80, tests="# no tests here\n")
    code, out, folder = run_test(path, capsys)
    assert code == 2
    assert "pytest found no tests in tests" in out
    assert "hint: a test stage with no tests checks nothing" in out
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["status"] == "error"

"""The pytest adapter: runs a project's tests with JUnit XML and coverage JSON."""

from __future__ import annotations

import json

# junit.xml is written by the pytest run mlcd just started, on code that already ran with
# the same rights: parsing it crosses no trust boundary.
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import UserInputError
from mlcd.projectfiles import Exclusions
from mlcd.tools.base import python_module_argv, run


@dataclass(frozen=True)
class TestCase:
    name: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""


@dataclass
class TestRun:
    returncode: int
    cases: list[TestCase] = field(default_factory=list)
    coverage_percent: float | None = None
    output_tail: str = ""

    @property
    def failed(self) -> list[TestCase]:
        return [c for c in self.cases if c.outcome in ("failed", "error")]


def run_tests(
    paths: list[Path],
    *,
    cwd: Path,
    cov_sources: list[Path],
    junit: Path,
    cov_json: Path,
    cov_exclude: list[Path] | None = None,
    exclude: Exclusions | None = None,
) -> TestRun:
    """pytest on paths with JUnit XML and coverage JSON written where the caller says.

    The coverage figure leaves out the files under `cov_exclude` (the tests themselves),
    so that a test suite does not raise its own score. Nothing under `exclude` (mlcd's own
    checkout, virtualenvs, the run folder) is collected, nor kept in the coverage report.
    """
    argv = [
        *python_module_argv("pytest"),
        *map(str, paths),
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",  # xunit1 records each test's file, for pytest's node ids
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "--cov-report=",
        f"--cov-report=json:{cov_json}",
    ]
    if exclude is not None:
        argv.extend(exclude.pytest_args())
    python_module_argv("pytest_cov", package="pytest-cov")  # exit 3 with a hint if missing
    argv.extend(f"--cov={src}" for src in cov_sources)
    for stale in (junit, cov_json):
        stale.unlink(missing_ok=True)
    env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        # coverage's data file goes next to the report, not into the user's project
        "COVERAGE_FILE": str(cov_json.with_name(".coverage")),
    }
    result = run(argv, cwd=cwd, timeout=3600, env=env)
    if result.returncode in (3, 4):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise UserInputError(f"pytest could not run the tests: {tail}")
    outcome = TestRun(returncode=result.returncode)
    outcome.output_tail = "\n".join(result.stdout.strip().splitlines()[-30:])
    if junit.is_file():
        outcome.cases = _parse_junit(junit)
    if cov_json.is_file():
        data = json.loads(cov_json.read_text("utf-8"))
        if exclude is not None:
            data = _without(data, cwd=cwd, exclude=exclude)
            cov_json.write_text(json.dumps(data), "utf-8")
        outcome.coverage_percent = coverage_percent(data, cwd=cwd, exclude=cov_exclude or [])
    return outcome


def coverage_percent(data: dict[str, Any], *, cwd: Path, exclude: list[Path]) -> float | None:
    """coverage's own figure (lines, plus branches when measured) over the files that are
    not under `exclude`; None when no statement was measured."""
    excluded = [path.resolve() for path in exclude]
    covered = total = 0
    for name, entry in data.get("files", {}).items():
        path = (cwd / name).resolve()
        if any(path == ex or ex in path.parents for ex in excluded):
            continue
        summary = entry.get("summary", {})
        covered += int(summary.get("covered_lines", 0)) + int(summary.get("covered_branches", 0))
        total += int(summary.get("num_statements", 0)) + int(summary.get("num_branches", 0))
    if total == 0:
        return None
    return 100.0 * covered / total


def _without(data: dict[str, Any], *, cwd: Path, exclude: Exclusions) -> dict[str, Any]:
    """coverage's JSON report without the files under `exclude` (and its totals summed
    again over the files it keeps)."""
    files = data.get("files")
    if not isinstance(files, dict):
        return data
    kept = {name: entry for name, entry in files.items() if not exclude.excludes(cwd / name)}
    if len(kept) == len(files):
        return data
    totals: dict[str, Any] = {}
    for entry in kept.values():
        for key, value in (entry.get("summary") or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    statements = totals.get("num_statements", 0) + totals.get("num_branches", 0)
    covered = totals.get("covered_lines", 0) + totals.get("covered_branches", 0)
    totals["percent_covered"] = 100.0 * covered / statements if statements else 100.0
    totals["percent_covered_display"] = f"{totals['percent_covered']:.0f}"
    return {**data, "files": kept, "totals": {**(data.get("totals") or {}), **totals}}


def _node_id(case: ET.Element) -> str:
    """pytest's node id (`tests/test_x.py::TestA::test_b`) from a JUnit testcase (xunit1
    carries the file; without it, the dotted class name is the best there is)."""
    classname, name = case.get("classname", ""), case.get("name", "")
    file = case.get("file")
    if not file:
        return f"{classname}::{name}".lstrip(":")
    module = file.removesuffix(".py").replace("/", ".").replace("\\", ".")
    classes = classname.removeprefix(module).strip(".") if classname.startswith(module) else ""
    return "::".join(part for part in (file, *classes.split("."), name) if part)


def _parse_junit(path: Path) -> list[TestCase]:
    root = ET.parse(path).getroot()  # noqa: S314  # nosec B314
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                lines = (child.get("message") or "").strip().splitlines()
                message = lines[0] if lines else ""
                break
        cases.append(TestCase(name=_node_id(case), outcome=outcome, message=message[:300]))
    return cases

"""The pytest adapter: runs a project's tests with JUnit XML and coverage JSON."""

from __future__ import annotations

import json

# junit.xml is written by the pytest run mlcd just started, on code that already ran with
# the same rights: parsing it crosses no trust boundary.
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass, field
from pathlib import Path

from mlcd.errors import UserInputError
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
    paths: list[Path], *, cwd: Path, cov_sources: list[Path], junit: Path, cov_json: Path
) -> TestRun:
    argv = [
        *python_module_argv("pytest"),
        *map(str, paths),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "--cov-report=",
        f"--cov-report=json:{cov_json}",
    ]
    argv.extend(f"--cov={src}" for src in cov_sources)
    result = run(argv, cwd=cwd, timeout=3600, env={"PYTHONDONTWRITEBYTECODE": "1"})
    if result.returncode in (3, 4):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise UserInputError(f"pytest could not run the tests: {tail}")
    outcome = TestRun(returncode=result.returncode)
    outcome.output_tail = "\n".join(result.stdout.strip().splitlines()[-30:])
    if junit.is_file():
        outcome.cases = _parse_junit(junit)
    if cov_json.is_file():
        data = json.loads(cov_json.read_text("utf-8"))
        outcome.coverage_percent = float(data["totals"]["percent_covered"])
    return outcome


def _parse_junit(path: Path) -> list[TestCase]:
    root = ET.parse(path).getroot()  # noqa: S314  # nosec B314
    cases = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (
                    (child.get("message") or "").splitlines()[0] if child.get("message") else ""
                )
                break
        cases.append(TestCase(name=name, outcome=outcome, message=message[:300]))
    return cases

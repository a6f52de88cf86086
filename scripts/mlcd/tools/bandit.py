"""The bandit adapter: findings as data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlcd.errors import EnvironmentMissing
from mlcd.projectfiles import Exclusions
from mlcd.tools.base import python_module_argv, run

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class BanditFinding:
    test_id: str
    test_name: str
    message: str
    severity: str
    confidence: str
    path: Path
    line: int
    column: int
    url: str | None


def scan(paths: list[Path], *, cwd: Path, exclude: Exclusions | None = None) -> list[BanditFinding]:
    """bandit on paths (recursively), at every severity, leaving out `exclude`; the caller
    applies the policy."""
    argv = [*python_module_argv("bandit"), "-r", "-f", "json", "-q"]
    if exclude is not None:
        argv += ["-x", exclude.bandit_exclude()]
    argv += list(map(str, paths))
    result = run(argv, cwd=cwd, timeout=600)
    # bandit exits 1 when it has findings; anything without JSON output is a failure.
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        first = next((ln for ln in result.stderr.splitlines() if ln.strip()), "no output")
        raise EnvironmentMissing(f"bandit failed: {first}") from exc
    return [
        BanditFinding(
            test_id=str(item["test_id"]),
            test_name=str(item.get("test_name", "")),
            message=str(item.get("issue_text", "")),
            severity=str(item.get("issue_severity", "LOW")).lower(),
            confidence=str(item.get("issue_confidence", "LOW")).lower(),
            path=(cwd / item["filename"]).resolve(),
            line=int(item.get("line_number", 1)),
            column=int(item.get("col_offset", 0)) + 1,
            url=item.get("more_info"),
        )
        for item in data.get("results", [])
    ]

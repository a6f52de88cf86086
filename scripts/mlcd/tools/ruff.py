"""The ruff adapter: `ruff check` and `ruff format --check`, as data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.projectfiles import Exclusions
from mlcd.tools.base import python_module_argv, run


@dataclass(frozen=True)
class RuffFinding:
    code: str
    message: str
    path: Path
    line: int
    column: int
    url: str | None


def _excluded(exclude: Exclusions | None) -> list[str]:
    return exclude.ruff_args() if exclude is not None else []


def check(paths: list[Path], *, cwd: Path, exclude: Exclusions | None = None) -> list[RuffFinding]:
    """`ruff check` on paths, leaving out `exclude`; findings with absolute paths."""
    argv = [
        *python_module_argv("ruff"),
        "check",
        "--output-format=json",
        "--no-cache",
        "--exit-zero",
        *_excluded(exclude),
        *map(str, paths),
    ]
    result = run(argv, cwd=cwd, timeout=600)
    if result.returncode != 0:
        raise _failure("ruff check", result.stderr)
    try:
        items = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise EnvironmentMissing(f"ruff printed output mlcd cannot read ({exc})") from exc
    findings = []
    for item in items:
        location = item.get("location") or {}
        findings.append(
            RuffFinding(
                code=str(item.get("code") or "syntax-error"),
                message=str(item.get("message", "")),
                path=Path(item["filename"]).resolve(),
                line=int(location.get("row", 1)),
                column=int(location.get("column", 1)),
                url=item.get("url"),
            )
        )
    return findings


@dataclass(frozen=True)
class Unformatted:
    """A file `ruff format` would change, and the first line it would change."""

    path: Path
    line: int = 1


def format_check(
    paths: list[Path], *, cwd: Path, exclude: Exclusions | None = None
) -> list[Unformatted]:
    """Files that `ruff format --check` would reformat.

    Newer ruff reports them as JSON (with the first changed line); older ruff has no
    `--output-format` for `format` and prints `Would reformat: PATH` lines instead.
    """
    base = [*python_module_argv("ruff"), "format", "--check", "--no-cache", *_excluded(exclude)]
    result = run([*base, "--output-format=json", *map(str, paths)], cwd=cwd, timeout=600)
    if result.returncode == 2 and "--output-format" in result.stderr:
        result = run([*base, *map(str, paths)], cwd=cwd, timeout=600)
        if result.returncode not in (0, 1):
            raise _failure("ruff format", result.stderr)
        prefix = "Would reformat: "
        return [
            Unformatted((cwd / line.removeprefix(prefix).strip()).resolve())
            for line in result.stdout.splitlines()
            if line.startswith(prefix)
        ]
    if result.returncode not in (0, 1):
        raise _failure("ruff format", result.stderr)
    try:
        items = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise EnvironmentMissing(f"ruff format printed output mlcd cannot read ({exc})") from exc
    return [
        Unformatted(
            (cwd / item["filename"]).resolve(),
            int((item.get("location") or {}).get("row", 1)),
        )
        for item in items
    ]


def _failure(what: str, stderr: str) -> UserInputError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()][:3]
    first = "; ".join(lines) or "no message"
    return UserInputError(
        f"{what} could not run: {first}", hint="check lint.paths and ruff's config"
    )

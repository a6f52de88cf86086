"""The git adapter: where the repository is and which commit it is at. Never fails hard."""

from __future__ import annotations

import os
from pathlib import Path

from mlcd.errors import EnvironmentMissing
from mlcd.tools.base import run


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = run(["git", *args], cwd=cwd, timeout=30)
    except EnvironmentMissing:
        return None
    out = result.stdout.strip()
    return out if result.returncode == 0 and out else None


def head_sha(cwd: Path) -> str:
    """The commit (GITHUB_SHA in Actions), or `unknown` outside a repository."""
    return os.environ.get("GITHUB_SHA") or _git(["rev-parse", "HEAD"], cwd) or "unknown"


def toplevel(cwd: Path) -> Path:
    """The repository root, or `cwd` itself when it is not in a repository."""
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    return Path(top).resolve() if top else cwd.resolve()

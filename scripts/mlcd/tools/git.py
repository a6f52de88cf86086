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


def commit_time(cwd: Path) -> str | None:
    """The HEAD commit's time, ISO 8601 in UTC (reproducible image `created` labels)."""
    stamp = _git(["log", "-1", "--format=%ct"], cwd)
    if stamp is None or not stamp.isdigit():
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def remote_url(cwd: Path) -> str | None:
    """The `origin` remote (GITHUB_SERVER_URL/GITHUB_REPOSITORY in Actions), if any."""
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repo:
        return f"{server}/{repo}"
    return _git(["config", "--get", "remote.origin.url"], cwd)


def origin_url(cwd: Path) -> str | None:
    """The `origin` remote of the repository at cwd (never the Actions run's repository)."""
    return _git(["config", "--get", "remote.origin.url"], cwd)


def default_branch(cwd: Path) -> str | None:
    """origin's default branch when known, else the branch checked out."""
    head = _git(["symbolic-ref", "--short", "refs/remotes/origin/HEAD"], cwd)
    if head and "/" in head:
        return head.split("/", 1)[1]
    branch = _git(["symbolic-ref", "--short", "HEAD"], cwd)
    return branch or None

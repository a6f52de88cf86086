"""Integration fixtures: small projects on disk, in a git repository, run with real tools."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.example_runs import Runs, train_and_evaluate_twice

# the images several files serve from, built once per session (see images.py)
from tests.integration.images import built, project

__all__ = ["built", "project"]

Project = Callable[[dict[str, str]], Path]


@pytest.fixture
def make_project(tmp_path: Path) -> Project:
    """Write files (path → text) under tmp_path/repo/proj in a fresh git repository and
    return the project folder; the repository root is its parent."""

    def make(files: dict[str, str]) -> Path:
        repo = tmp_path / "repo"
        project = repo / "proj"
        for name, text in files.items():
            path = project / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), "utf-8")
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        return project

    return make


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The example trained and evaluated twice, the second time against a champion."""
    return train_and_evaluate_twice(tmp_path_factory.mktemp("example"))

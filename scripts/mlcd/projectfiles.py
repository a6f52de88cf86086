"""The project is the project: the folders inside it that are not the team's files.

In GitHub Actions every job checks mlcd out into the caller's workspace (`.mlcd-kit/`, see
`.github/workflows/deliver.yml`), and `lint.paths` defaults to `["."]`: without this, ruff
and bandit would lint mlcd's own code, pytest could collect its tests, and Trivy would scan
its files. One list, made here, is what every adapter leaves out (ruff `--extend-exclude`,
bandit `-x`, pytest `--ignore`, the coverage figure and report, Trivy `--skip-dirs`):

- mlcd's own checkout: `.mlcd-kit` anywhere, and the repository the running mlcd package
  comes from when it lies inside the project;
- what mlcd writes: the run folder (`--out`), the local model registry, the environments'
  state folder;
- virtualenvs (a folder holding `pyvenv.cfg`, and the one running mlcd) and the usual
  tool caches and VCS folders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mlcd
from mlcd.config import LoadedConfig

KIT_FOLDER = ".mlcd-kit"
STATE_ENV = "MLCD_STATE_DIR"
# folder names left out wherever they are (ruff and Trivy by pattern, bandit by path part)
SKIPPED_NAMES = (
    KIT_FOLDER,
    ".git",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".eggs",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)


@dataclass(frozen=True)
class Exclusions:
    """Folders (absolute, inside the repository `top`) and folder names to leave out (below
    `top` only: a project that itself lies under a `venv/` folder is still linted)."""

    top: Path
    folders: tuple[Path, ...]
    names: tuple[str, ...] = SKIPPED_NAMES

    def excludes(self, path: Path) -> bool:
        """True when `path` lies in (or is) a left-out folder, or under a left-out name."""
        resolved = path.resolve()
        if any(resolved == f or f in resolved.parents for f in self.folders):
            return True
        try:
            parts = resolved.relative_to(self.top).parts
        except ValueError:
            return False
        return any(part in self.names for part in parts)

    def ruff_args(self) -> list[str]:
        args = ["--force-exclude"]
        for item in (*self.names, *map(str, self.folders)):
            args += ["--extend-exclude", item]
        return args

    def bandit_exclude(self) -> str:
        """bandit's `-x`: it drops a file whose path contains any of these strings (and
        replaces its default list, which is kept here)."""
        parts = [f"{self.top}/{name}/*" for name in self.names]
        parts += [f"{self.top}/*/{name}/*" for name in self.names]
        parts += [str(f) + "/" for f in self.folders]
        return ",".join([*parts, ".svn", "CVS", ".bzr", ".hg", "*.egg"])

    def pytest_args(self) -> list[str]:
        args = [f"--ignore={folder}" for folder in self.folders]
        for name in self.names:
            args += [f"--ignore-glob={self.top}/{name}", f"--ignore-glob={self.top}/*/{name}"]
        return args

    def trivy_skip_dirs(self) -> list[Path]:
        return [*self.folders, *(Path("**") / name for name in self.names)]


def kit_root() -> Path | None:
    """The repository the running mlcd package was installed from (`scripts/mlcd`), when
    it runs from a checkout (an editable install, or the workflows' `.mlcd-kit`)."""
    package = Path(mlcd.__file__).resolve().parent
    root = package.parent.parent
    if package.parent.name == "scripts" and (root / "pyproject.toml").is_file():
        return root
    return None


def _inside(folder: Path, tops: Iterable[Path]) -> bool:
    return any(top in folder.parents for top in tops)


def _virtualenvs(tops: Iterable[Path]) -> list[Path]:
    found = []
    for top in tops:
        try:
            children = list(top.iterdir())
        except OSError:
            continue
        found += [c for c in children if c.is_dir() and (c / "pyvenv.cfg").is_file()]
    return found


def exclusions(loaded: LoadedConfig, out: Path, repo: Path) -> Exclusions:
    """What lint, test, scan and coverage leave out of the project rooted at the config's
    folder, in the repository `repo` (its root, when it is one)."""
    root = loaded.root.resolve()
    tops = {root, repo.resolve()}
    state = os.environ.get(STATE_ENV)
    candidates = [
        out.resolve(),
        loaded.resolve(loaded.config.registry.path),
        Path(state).resolve() if state else root / ".mlcd-state",
        *(top / KIT_FOLDER for top in tops),
        *_virtualenvs(tops),
    ]
    kit = kit_root()
    if kit is not None:
        candidates.append(kit)
    if sys.prefix != sys.base_prefix:
        candidates.append(Path(sys.prefix).resolve())
    folders: list[Path] = []
    for folder in candidates:
        if _inside(folder, tops) and folder not in folders:
            folders.append(folder)
    return Exclusions(repo.resolve(), tuple(folders))

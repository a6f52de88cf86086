"""`mlcd deps`: install the project's own dependencies into the Python running mlcd.

Two parts, chosen with `--for`:
- `model`: `model.requirements` as the same pinned, hash-checked wheels `mlcd build` puts
  into the image (`image.wheelhouse.model_requirements`); on a Python that is not the
  image's (CPython 3.11, glibc x86-64) the file is resolved for this Python instead, with
  hashes all the same. Installed with `--no-index --require-hashes` from the wheel cache.
- `test`: the project's declared test dependencies (`test.install`): its `requirements*.txt`
  files, or the dependencies of its `pyproject.toml` project and its test extra.

It writes nothing into the run folder: every workflow job runs it in its own fresh
environment, and a `deps/` folder would collide between the jobs' artifacts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlcd.config import LoadedConfig
from mlcd.context import Command, Context
from mlcd.errors import UserInputError
from mlcd.tools import pip
from mlcd.tools.git import toplevel

Part = Literal["model", "test"]
EXTRAS = ("test", "tests", "testing", "dev")


@dataclass(frozen=True)
class Source:
    """One thing to install: a requirements file, or a pyproject's requirement list."""

    part: Part
    shown: str  # how the user names it: `model.requirements: x.txt`, `requirements-dev.txt`
    path: Path
    packages: tuple[str, ...] = ()  # pyproject: the requirement strings


@dataclass
class Outcome:
    installed: list[tuple[Source, pip.Installed]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "installed": [
                {
                    "name": i.name,
                    "version": i.version,
                    "sha256": i.sha256,
                    "for": s.part,
                    "source": s.shown,
                }
                for s, i in self.installed
            ],
            "sources": [{"for": s.part, "source": s.shown} for s in self.sources],
            "notes": self.notes,
        }


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _folders(loaded: LoadedConfig, repo: Path) -> list[Path]:
    """The config's folder, then the repository root when that is another folder."""
    root = loaded.root.resolve()
    return [root] if repo == root else [root, repo]


def _model_file(loaded: LoadedConfig) -> Path | None:
    named = loaded.config.model.requirements
    return loaded.resolve(named) if named else None


def requirement_files(loaded: LoadedConfig, repo: Path) -> list[Path]:
    """`requirements*.txt` next to the config and at the repository root, except the
    model's own file (installed hash-checked by the model part)."""
    model_file = _model_file(loaded)
    found: list[Path] = []
    for folder in _folders(loaded, repo):
        for path in sorted(folder.glob("requirements*.txt")):
            resolved = path.resolve()
            if path.is_file() and resolved != model_file and resolved not in found:
                found.append(resolved)
    return found


def pyproject_file(loaded: LoadedConfig, repo: Path) -> Path | None:
    """The nearest `pyproject.toml` (config folder, then repository root) with a `[project]`
    that declares dependencies or extras."""
    for folder in _folders(loaded, repo):
        path = folder / "pyproject.toml"
        if path.is_file() and pyproject_requirements(path, check_only=True):
            return path
    return None


def pyproject_requirements(path: Path, *, check_only: bool = False) -> list[str]:
    """The project's dependencies and those of its first test extra (`test`, `tests`,
    `testing`, `dev`); exit 2 when the file is not TOML."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: not valid TOML: {exc}") from exc
    project = data.get("project")
    if not isinstance(project, dict):
        return []
    wanted = [str(r) for r in project.get("dependencies") or []]
    extras = project.get("optional-dependencies") or {}
    for name in EXTRAS:
        if isinstance(extras, dict) and name in extras:
            wanted += [str(r) for r in extras[name] or []]
            break
    if check_only:
        return wanted or (["(extras)"] if extras else [])
    return wanted


def test_sources(loaded: LoadedConfig, repo: Path) -> tuple[list[Source], list[str]]:
    """What `test.install` says to install for the tests (files found in the config's
    folder and the repository root `repo`), and notes for the user."""
    cfg = loaded.config.test
    root = loaded.root.resolve()
    repo = repo.resolve()
    how = cfg.install
    if how == "none":
        return [], ["test dependencies: none (test.install: none)"]
    if cfg.requirements is not None:
        files = []
        for rel in cfg.requirements:
            path = loaded.resolve(rel)
            if not path.is_file():
                raise UserInputError(
                    f"{loaded.path}: test.requirements names `{rel}`, which does not exist "
                    f"(looked for {path})",
                    hint="paths are relative to the config file's folder",
                )
            files.append(path)
    else:
        files = requirement_files(loaded, repo) if how in ("auto", "requirements") else []
    pyproject = pyproject_file(loaded, repo) if how in ("auto", "pyproject") else None
    if how == "auto" and files and pyproject is not None and cfg.requirements is None:
        raise UserInputError(
            f"{loaded.path}: the project declares test dependencies twice: "
            f"{', '.join(_shown(f, repo) for f in files)} and {_shown(pyproject, repo)}",
            hint="say which `mlcd deps` installs: `test: {install: requirements}` or "
            "`test: {install: pyproject}` in mlcd.yaml",
        )
    if how == "pyproject" and pyproject is None:
        raise UserInputError(
            f"{loaded.path}: test.install is `pyproject`, but no pyproject.toml with a "
            f"[project] table is in {root} or {repo}"
        )
    if how == "requirements" and not files:
        raise UserInputError(
            f"{loaded.path}: test.install is `requirements`, but no requirements*.txt is in "
            f"{root} or {repo}",
            hint="name the files in test.requirements",
        )
    if pyproject is not None and how != "requirements":
        packages = tuple(pyproject_requirements(pyproject))
        return [Source("test", _shown(pyproject, repo), pyproject, packages)], []
    if not files:
        return [], ["test dependencies: none declared (no requirements*.txt or pyproject.toml)"]
    return [Source("test", _shown(f, repo), f) for f in files], []


def _install_model(loaded: LoadedConfig, cache: Path, outcome: Outcome) -> None:
    from mlcd.image import wheelhouse

    named = loaded.config.model.requirements
    if not named:
        outcome.notes.append("model.requirements: none (the model needs only scikit-learn)")
        return
    path = loaded.resolve(named)
    source = Source("model", f"model.requirements: {named}", path)
    outcome.sources.append(source)
    here = not wheelhouse.image_platform_here()
    lock = wheelhouse.serving_pins(dataframe=False)
    pins = wheelhouse.model_requirements(path, named, lock, cache, here=here)
    if not pins:
        return
    found = wheelhouse.ensure_wheels(pins, cache)
    with tempfile.TemporaryDirectory(prefix="mlcd-deps-") as tmp:
        folder = Path(tmp) / "wheels"
        folder.mkdir()
        for pin in pins:
            wheel = found[pin.sha256]
            shutil.copyfile(wheel, folder / wheel.name)
        lock_file = Path(tmp) / "requirements.txt"
        lock_file.write_text(
            "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in pins), "utf-8"
        )
        done = pip.install(
            requirements=[lock_file],
            find_links=folder,
            require_hashes=True,
            no_deps=True,
            source=source.shown,
        )
    outcome.installed += [(source, item) for item in done]


def _install_test(loaded: LoadedConfig, outcome: Outcome) -> None:
    sources, notes = test_sources(loaded, toplevel(loaded.root))
    outcome.notes += notes
    for source in sources:
        outcome.sources.append(source)
        if source.path.suffix == ".toml":
            if not source.packages:
                continue
            done = pip.install(packages=source.packages, source=source.shown)
        else:
            done = pip.install(requirements=[source.path], source=source.shown)
        outcome.installed += [(source, item) for item in done]


def install(loaded: LoadedConfig, which: str, cache: Path) -> Outcome:
    outcome = Outcome()
    if which in ("model", "all"):
        _install_model(loaded, cache, outcome)
    if which in ("test", "all"):
        _install_test(loaded, outcome)
    return outcome


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--for",
        dest="which",
        choices=("model", "test", "all"),
        default="all",
        help="model: model.requirements (hash-checked, the image's wheels); test: the "
        "project's test dependencies (test.install); all: both (default)",
    )
    parser.add_argument(
        "--wheel-cache",
        metavar="DIR",
        type=Path,
        default=None,
        help="where model wheels are cached (default: $MLCD_CACHE/wheels or "
        "~/.cache/mlcd/wheels, as mlcd build)",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    from mlcd.image import wheelhouse

    cache = args.wheel_cache or wheelhouse.default_cache()
    outcome = install(ctx.loaded, args.which, cache)
    if ctx.fmt == "json":
        print(json.dumps(outcome.to_json(), indent=2, sort_keys=True), file=ctx.stream)
        return 0
    for source, item in outcome.installed:
        ctx.say(f"installed {item.name} {item.version} ({source.shown})")
    for source in outcome.sources:
        if not any(s == source for s, _ in outcome.installed):
            ctx.say(f"already installed: everything {source.shown} names")
    for note in outcome.notes:
        ctx.say(note)
    ctx.say(f"✅ deps: {len(outcome.installed)} installed into {sys.prefix}")
    return 0


COMMAND = Command(
    name="deps",
    help="install model.requirements and the test dependencies into this Python",
    description="Install the project's own dependencies into the Python environment that "
    "runs mlcd, before lint, test and train: model.requirements as the same pinned, "
    "hash-checked wheels the image gets (resolved once, cached like mlcd build's), and the "
    "test dependencies test.install names (requirements*.txt, or the pyproject.toml "
    "project's dependencies and test extra). A missing file or a package pip cannot find "
    "is exit 2 naming it; no package index is exit 3. Writes nothing into the run folder.",
    example="mlcd deps --config model/mlcd.yaml\nmlcd deps --for model --format json",
    add_arguments=_arguments,
    run=_run,
)

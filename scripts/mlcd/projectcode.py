"""The team's own code in a model: which of a fitted model's types come from the project.

skops lists every type a model file needs that it does not trust by default. Each falls in
one class (see the README, "The model: what mlcd delivers"):

- mlcd's own list (`modelio.TRUSTED_TYPES`: scikit-learn and NumPy data holders);
- a *project type*: defined in a module of the project's own source, i.e. a module name
  `a.b` that is the file `<config folder>/a/b.py` (or `a/b/__init__.py`) and that no
  installed package or standard module of that top-level name shadows. These are trusted
  because the code is the team's, reviewed with the model; the files are shipped in the
  image (`project_modules` in model.json);
- a *declared type*: on `model.trusted-types` in mlcd.yaml (an estimator from another
  package, e.g. `imblearn.ensemble._forest.BalancedRandomForestClassifier`);
- anything else is refused.

Whatever the lists say, a type the model scanner knows to be dangerous (`os.system`,
`builtins.eval`, …) is never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.modelio import TRUSTED_TYPES, load_model, needed_types


def is_dangerous(name: str) -> bool:
    """The model scanner's verdict: a callable that can run code when a file is loaded."""
    from mlcd.security import allowlist

    return allowlist.is_dangerous(name)


def _shadowed(top: str, root: Path) -> bool:
    """A top-level name that the standard library or an installed package already owns."""
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "mlcd":
        return True
    here = root.resolve()
    elsewhere = [
        p
        for p in sys.path
        if p and Path(p).resolve() != here and not Path(p).resolve().is_relative_to(here)
    ]
    try:
        spec = importlib.machinery.PathFinder.find_spec(top, elsewhere)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # a namespace package is only folders; it does not claim the name
    return spec.origin is not None


def module_file(module: str, root: Path) -> Path | None:
    """The project file that defines `module` (a dotted name), or None if it is not one."""
    parts = module.split(".")
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    if _shadowed(parts[0], root):
        return None
    base = root.resolve().joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def type_module(name: str, root: Path) -> tuple[str, Path] | None:
    """(module, file) when the type `name` (module.Qual.Name) is defined in the project."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        found = module_file(module, root)
        if found is not None:
            return module, found
    return None


@dataclass(frozen=True)
class TypeReport:
    """The types a model file needs beyond skops's defaults, by why they may be loaded."""

    needed: list[str]
    builtin: list[str] = field(default_factory=list)
    project: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    dangerous: list[str] = field(default_factory=list)
    modules: dict[str, Path] = field(default_factory=dict)  # project module → its file

    @property
    def allowed(self) -> list[str]:
        """What a loader may pass to skops as trusted (never a dangerous type)."""
        return sorted({*self.builtin, *self.project, *self.declared})


def classify(needed: Iterable[str], root: Path, declared: Iterable[str] = ()) -> TypeReport:
    """Sort a model's needed types into mlcd's, the project's, the declared and the refused."""
    declared_set = set(declared)
    report = TypeReport(needed=sorted(set(needed)))
    for name in report.needed:
        if is_dangerous(name):
            report.dangerous.append(name)
            continue
        if name in TRUSTED_TYPES:
            report.builtin.append(name)
            continue
        found = type_module(name, root)
        if found is not None:
            report.project.append(name)
            report.modules[found[0]] = found[1]
        elif name in declared_set:
            report.declared.append(name)
        else:
            report.refused.append(name)
    return report


def _rel(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loaded_modules(root: Path) -> dict[str, Path]:
    """The project's modules imported in this process (by the entrypoint and what it uses)."""
    out: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not origin:
            continue
        found = module_file(name, root)
        if found is not None and found == Path(origin).resolve():
            out[name] = found
    return out


def modules_to_ship(
    report: TypeReport, root: Path, imported: dict[str, Path]
) -> list[dict[str, Any]]:
    """The project files the image needs: the modules that define the model's project types,
    their packages' `__init__.py`, and the project modules imported with them at train.

    Nothing when the model has no project type (the image then holds no project code).
    """
    if not report.modules:
        return []
    files: dict[str, Path] = {}
    for module, path in {**imported, **report.modules}.items():
        files[module] = path
        parts = module.split(".")
        for cut in range(1, len(parts)):
            package = module_file(".".join(parts[:cut]), root)
            if package is not None and package.name == "__init__.py":
                files[".".join(parts[:cut])] = package
    return [
        {"module": module, "path": _rel(path, root), "sha256": _sha256(path)}
        for module, path in sorted(files.items())
    ]


def check_shipped(entries: list[dict[str, Any]], root: Path) -> list[tuple[Path, str]]:
    """(file, path in the image) for each recorded project module; exit 2 when one changed.

    The image must hold the code the model was trained with, byte for byte.
    """
    from mlcd.errors import UserInputError

    out: list[tuple[Path, str]] = []
    problems = []
    for entry in entries:
        rel = str(entry.get("path") or "")
        path = (root / rel).resolve()
        if not rel or not path.is_relative_to(root.resolve()):
            problems.append(f"{rel or '?'}: not a file under {root}")
        elif not path.is_file():
            problems.append(f"{rel}: the model needs it, but it no longer exists")
        elif _sha256(path) != entry.get("sha256"):
            problems.append(f"{rel}: changed since `mlcd train` fitted the model")
        else:
            out.append((path, rel))
    if problems:
        raise UserInputError(
            f"the project's own modules the model needs differ from those it was trained "
            f"with ({len(problems)})",
            problems=problems,
            hint="run `mlcd train` again, so that the image ships the code the model was "
            "fitted with",
        )
    return out


def load_project_model(path: Path, root: Path, declared: Iterable[str] = ()) -> Any:
    """Load a model of the project at `root`: its own types and `declared` are trusted,
    and its modules are importable (the config's folder is on sys.path while loading)."""
    from mlcd import entrypoint

    report = classify(needed_types(path), root, declared)
    for module in report.modules:
        entrypoint.forget(module.split(".")[0])  # an earlier project's module of that name
    with entrypoint.project_path(root):
        return load_model(path, report.allowed)

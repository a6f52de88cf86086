"""Finding and calling `model.entrypoint`: `path.py:function` or `package.module:function`.

The user's function returns an UNFITTED scikit-learn estimator; anything else, and any
error while importing or calling it, is the user's input being wrong (exit 2) and says so.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlcd.errors import UserInputError

KEY = "model.entrypoint"


@dataclass(frozen=True)
class Entrypoint:
    """A parsed entrypoint: the module (a file or a dotted name) and the function."""

    text: str
    module: str
    function: str
    file: Path | None  # set for `path.py:function`

    @property
    def code_files(self) -> list[Path]:
        """The files whose content the model's fingerprint covers."""
        if self.file is None:
            return []
        return sorted(p for p in self.file.parent.glob("*.py") if p.is_file())


def parse(text: str, root: Path) -> Entrypoint:
    module, _, function = text.rpartition(":")
    if not module or not function:
        raise UserInputError(f"{KEY}: `{text}` is not `path.py:function` or `module:function`")
    if module.endswith(".py"):
        file = (root / module).resolve()
        if not file.is_file():
            raise UserInputError(
                f"{KEY}: `{text}` names {file}, which does not exist",
                hint="the path is relative to the config file's folder",
            )
        return Entrypoint(text, module, function, file)
    return Entrypoint(text, module, function, None)


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _not_python(file: Path) -> UserInputError:
    return UserInputError(f"{KEY}: cannot import {file} as Python")


def module_name(file: Path, root: Path) -> tuple[str, Path]:
    """The dotted name a file entrypoint is imported under, and the folder it is relative to.

    `model/pipeline.py` under the config's folder is `model.pipeline` (so the classes it
    defines have the same module name in training, in evaluation and in the image, and
    `from model.features import X` works); a file outside it, or under a folder that is not
    a Python name, is imported by its stem from its own folder.
    """
    try:
        rel = file.resolve().relative_to(root.resolve())
    except ValueError:
        return file.stem, file.parent
    parts = [*rel.parent.parts, rel.stem]
    if all(p.isidentifier() for p in parts):
        return ".".join(parts), root.resolve()
    return file.stem, file.parent


def forget(top: str) -> None:
    """Drop an earlier import of the project's top-level module, so this one is fresh."""
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


@contextmanager
def project_path(root: Path, entry: Entrypoint | None = None) -> Iterator[None]:
    """The config's folder (and a file entrypoint's own folder) on sys.path."""
    folders = [root.resolve()]
    if entry is not None and entry.file is not None:
        folders.append(entry.file.parent)
    with _on_path(folders[-1]), _on_path(folders[0]):
        yield


def _import(entry: Entrypoint, root: Path) -> ModuleType:
    try:
        if entry.file is not None:
            name, _ = module_name(entry.file, root)
            if entry.file.suffix != ".py":
                raise _not_python(entry.file)  # noqa: TRY301 - re-raised as is below
            forget(name.split(".")[0])
            with project_path(root, entry):
                return importlib.import_module(name)
        with _on_path(root):
            return importlib.import_module(entry.module)
    except UserInputError:
        raise
    except ModuleNotFoundError as exc:
        raise UserInputError(
            f"{KEY}: importing `{entry.module}` failed: no module named `{exc.name}`",
            hint="the entrypoint is imported with the config's folder (and a file "
            "entrypoint's own folder) on sys.path; check the name, or use "
            "`path/to/file.py:function`",
        ) from exc
    except SyntaxError as exc:
        raise UserInputError(
            f"{KEY}: {exc.filename}:{exc.lineno}: cannot import it as Python ({exc.msg})"
        ) from exc
    except Exception as exc:  # the user's module raised while being imported
        raise UserInputError(
            f"{KEY}: importing `{entry.module}` raised {type(exc).__name__}: {exc}"
        ) from exc


def load_function(entry: Entrypoint, root: Path) -> Callable[..., Any]:
    module = _import(entry, root)
    function = getattr(module, entry.function, None)
    if function is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UserInputError(
            f"{KEY}: `{entry.module}` has no function `{entry.function}`",
            hint=f"callables defined there: {', '.join(public) or 'none'}",
        )
    if not callable(function):
        raise UserInputError(f"{KEY}: `{entry.text}` is not a function")
    return function  # type: ignore[no-any-return]


def build(entry: Entrypoint, root: Path, params: dict[str, Any], task: str) -> Any:
    """Call the entrypoint with `params` and check it returned an estimator for `task`."""
    from sklearn.base import is_classifier, is_regressor

    function = load_function(entry, root)
    try:
        estimator = function(**params)
    except TypeError as exc:
        raise UserInputError(
            f"{KEY}: `{entry.text}` rejected model.params {params}: {exc}"
        ) from exc
    except Exception as exc:  # the user's function raised
        raise UserInputError(
            f"{KEY}: `{entry.text}(**model.params)` raised {type(exc).__name__}: {exc}"
        ) from exc
    missing = [
        m for m in ("fit", "predict", "get_params") if not callable(getattr(estimator, m, None))
    ]
    if missing:
        raise UserInputError(
            f"{KEY}: `{entry.text}` returned a {type(estimator).__name__}, not a scikit-learn "
            f"estimator (it has no {', '.join(missing)})",
            hint="return an UNFITTED estimator or Pipeline, e.g. `return LogisticRegression()`",
        )
    if task == "classification" and not is_classifier(estimator):
        raise UserInputError(
            f"{KEY}: model.task is classification but `{entry.text}` returned "
            f"{type(estimator).__name__}, which is not a classifier"
        )
    if task == "regression" and not is_regressor(estimator):
        raise UserInputError(
            f"{KEY}: model.task is regression but `{entry.text}` returned "
            f"{type(estimator).__name__}, which is not a regressor"
        )
    return estimator


def code_sha256(entry: Entrypoint, root: Path) -> str:
    """A digest of the entrypoint's code: the .py files in its folder, or the module's file."""
    digest = hashlib.sha256(entry.text.encode())
    files = entry.code_files
    if not files and entry.file is None:
        with _on_path(root):
            try:
                spec = importlib.util.find_spec(entry.module.split(".")[0])
            except (ImportError, ValueError):
                spec = None
        origin = getattr(spec, "origin", None) if spec else None
        if origin and Path(origin).is_file():
            files = sorted(Path(origin).parent.rglob("*.py"))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()

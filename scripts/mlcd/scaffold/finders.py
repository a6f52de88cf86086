"""What `mlcd init` finds in a repository it was not written for: the data file, the
target column, and the function that builds the UNFITTED estimator.

Everything is read, nothing is run: the team's code is parsed with `ast`, never imported.
When a choice is ambiguous or nothing fits, the error (exit 2) names the candidates and the
option to pass.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlcd.errors import UserInputError
from mlcd.projectfiles import SKIPPED_NAMES

DATA_SUFFIXES = (".csv", ".parquet", ".pq")
# folders never searched: mlcd's and tools' own, build output, virtualenvs
_SKIP = {*SKIPPED_NAMES, ".mlcd", ".mlcd-registry", ".mlcd-state", "build", "dist", "site-packages"}
_MAX_DEPTH = 4
# column names that say "I am the label" (lower-case), in order of confidence
TARGET_NAMES = (
    "target",
    "label",
    "labels",
    "class",
    "y",
    "outcome",
    "churn",
    "churned",
    "diagnosis",
    "survived",
    "default",
    "fraud",
    "is_fraud",
    "price",
    "quality",
)
# function names that say "I build the model"
BUILDER_NAMES = (
    "build_model",
    "make_model",
    "create_model",
    "get_model",
    "build_pipeline",
    "make_estimator",
    "build_estimator",
    "model",
)
# packages whose classes are estimators
ESTIMATOR_PACKAGES = ("sklearn", "lightgbm", "xgboost", "imblearn", "catboost")
_ESTIMATOR_NAME = re.compile(
    r"(Classifier|Regressor|Regression|Pipeline|Classification|SVC|SVR|Ensemble|CV)$|"
    r"^make_pipeline$"
)
# imports the serving image has already, or that are mlcd's own
_PROVIDED = {"sklearn", "numpy", "pandas", "scipy", "joblib", "threadpoolctl", "skops", "mlcd"}
# import name -> distribution, where they differ (for model.requirements)
_DISTRIBUTIONS = {"imblearn": "imbalanced-learn", "sklearn": "scikit-learn", "yaml": "PyYAML"}


def _files(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files under root with these suffixes, skipping hidden, tool and virtualenv folders."""
    root_depth = len(root.parts)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP
            and not d.startswith(".")
            and not (here / d / "pyvenv.cfg").is_file()
            and len(here.parts) - root_depth < _MAX_DEPTH
        )
        for name in sorted(names):
            if name.endswith(suffixes):
                yield here / name


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def find_data(root: Path, given: str | None = None) -> Path:
    """The training data: `--data`, else the one CSV/Parquet file (or the one named like
    `train*`) in the repository."""
    if given:
        path = (root / given).resolve()
        if not path.is_file():
            raise UserInputError(f"--data {given}: no such file in {root}")
        if not path.name.endswith(DATA_SUFFIXES):
            raise UserInputError(f"--data {given}: mlcd reads CSV or Parquet files")
        return path
    found = list(_files(root, DATA_SUFFIXES))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserInputError(
            f"no CSV or Parquet file in {root}",
            hint="pass the training data: mlcd init --data path/to/train.csv",
        )
    training = [p for p in found if "train" in p.name.lower()]
    if len(training) == 1:
        return training[0]
    raise UserInputError(
        f"{len(found)} data files in {root}; which one is the training data?",
        problems=[_rel(p, root) for p in found[:20]],
        hint="pass it: mlcd init --data " + _rel(found[0], root),
    )


def read_columns(path: Path) -> list[str]:
    """The column names of a CSV (its header) or a Parquet file (its schema)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if not header:
            raise UserInputError(f"{path}: the CSV file has no header row")
        return [h.strip() for h in header]
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


@dataclass(frozen=True)
class Target:
    column: str
    why: str


def find_target(columns: list[str], given: str | None = None, *, data: str = "") -> Target:
    """`--target`, else the one column named like a label, else the last column."""
    if given:
        if given not in columns:
            raise UserInputError(
                f"--target {given}: {data} has no such column",
                hint="its columns: " + ", ".join(columns),
            )
        return Target(given, "given with --target")
    lowered = {c.lower(): c for c in columns}
    named = [lowered[n] for n in TARGET_NAMES if n in lowered]
    if len(named) == 1:
        return Target(named[0], "its name says it is the label")
    if len(named) > 1:
        raise UserInputError(
            f"{data}: several columns could be the target: {', '.join(named)}",
            hint=f"pass the one to predict: mlcd init --target {named[0]}",
        )
    if len(columns) < 2:
        raise UserInputError(f"{data}: one column only; a model needs features and a target")
    return Target(columns[-1], "the last column (pass --target to choose another)")


def infer_task(path: Path, target: str) -> str:
    """classification for text, booleans and few distinct integers; regression otherwise."""
    import pandas as pd

    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    column = frame[target].dropna()
    if column.empty:
        raise UserInputError(f"{path.name}: the target column `{target}` is empty")
    kind = column.dtype.kind
    if kind in "OSUbc" or str(column.dtype) in ("category", "string", "bool"):
        return "classification"
    distinct = column.nunique()
    if kind in "iu" and distinct <= max(20, len(column) // 20):
        return "classification"
    if kind == "f" and bool((column == column.round()).all()) and distinct <= 20:
        return "classification"
    return "regression"


def majority_share(path: Path, target: str) -> float:
    import pandas as pd

    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    counts = frame[target].dropna().value_counts(normalize=True)
    return float(counts.iloc[0]) if len(counts) else 0.0


# ------------------------------------------------------------------ the entrypoint


@dataclass(frozen=True)
class Builder:
    """A function that returns an unfitted estimator: `file.py:function`."""

    file: Path
    function: str
    returns: str  # what it returns, e.g. `Pipeline`

    def spec(self, root: Path) -> str:
        return f"{_rel(self.file, root)}:{self.function}"


def _is_test_file(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    name = path.name
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name in ("conftest.py", "setup.py", "noxfile.py")
    )


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """local name -> the module it comes from (`Pipeline` -> `sklearn.pipeline`)."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def _callee(node: ast.expr) -> str | None:
    """`Pipeline` of `Pipeline(...)`, `lgb.LGBMClassifier` → `lgb`/`LGBMClassifier`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _estimator_call(call: ast.Call, imported: dict[str, str]) -> str | None:
    name = _callee(call.func)
    if name is None:
        return None
    origin = imported.get(_root_name(call.func) or "", "")
    if origin.split(".")[0] in ESTIMATOR_PACKAGES:
        return name
    if _ESTIMATOR_NAME.search(name):
        return name
    return None


def _required_arguments(fn: ast.FunctionDef) -> int:
    positional = [*fn.args.posonlyargs, *fn.args.args]
    required = len(positional) - len(fn.args.defaults)
    required += sum(d is None for d in fn.args.kw_defaults)
    return required


def _fits(fn: ast.FunctionDef) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("fit", "fit_transform", "fit_predict")
        for n in ast.walk(fn)
    )


def _returns_estimator(fn: ast.FunctionDef, imported: dict[str, str]) -> str | None:
    assigned: dict[str, ast.Call] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = node.value
    for node in ast.walk(fn):
        if not isinstance(node, ast.Return) or node.value is None:
            continue
        value: ast.expr = node.value
        if isinstance(value, ast.Name) and value.id in assigned:
            value = assigned[value.id]
        if isinstance(value, ast.Call):
            found = _estimator_call(value, imported)
            if found:
                return found
    return None


def builders_in(path: Path) -> list[Builder]:
    """Top-level functions of one file that need no argument, fit nothing and return an
    estimator (a call of a scikit-learn, LightGBM, XGBoost, imbalanced-learn or CatBoost
    name, or of a name like `…Classifier`, `…Regressor`, `Pipeline`)."""
    try:
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    imported = _imported_names(tree)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        if _required_arguments(node) or _fits(node):
            continue
        returns = _returns_estimator(node, imported)
        if returns:
            found.append(Builder(path, node.name, returns))
    return found


def find_entrypoint(root: Path, given: str | None = None) -> Builder:
    """`--entrypoint`, else the one function of the repository that builds the unfitted
    estimator (among several, the one named like `build_model`)."""
    if given:
        file, _, function = given.rpartition(":")
        path = (root / file).resolve()
        if not file or not function or not path.is_file():
            raise UserInputError(
                f"--entrypoint {given}: expected FILE.py:FUNCTION with the file in {root}"
            )
        tree = ast.parse(path.read_text("utf-8"))
        if not any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body):
            raise UserInputError(f"--entrypoint {given}: {file} defines no function `{function}`")
        return Builder(path, function, "given with --entrypoint")
    found = [
        b
        for path in _files(root, (".py",))
        if not _is_test_file(path, root)
        for b in builders_in(path)
    ]
    if len(found) == 1:
        return found[0]
    named = [b for b in found if b.function in BUILDER_NAMES]
    if len(named) == 1:
        return named[0]
    if not found:
        raise UserInputError(
            f"no function in {root} returns an unfitted estimator",
            hint="pass the function that builds the model (it takes no required argument and "
            "returns e.g. a Pipeline, without fitting it): mlcd init --entrypoint "
            "path/to/train.py:build_model",
        )
    shown = named or found
    raise UserInputError(
        f"{len(shown)} functions could build the model; which one does?",
        problems=[f"{b.spec(root)} (returns {b.returns})" for b in shown[:20]],
        hint=f"pass it: mlcd init --entrypoint {shown[0].spec(root)}",
    )


def third_party_imports(path: Path, root: Path) -> list[str]:
    """Top-level modules the file imports that are neither the standard library, nor
    provided by the serving image (scikit-learn, NumPy, pandas, SciPy), nor the project's."""
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module.split(".")[0])
    local = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if p.is_dir()}
    local |= {p.stem for p in path.parent.glob("*.py")}
    found: list[str] = []
    for module in modules:
        if (
            module in sys.stdlib_module_names
            or module in _PROVIDED
            or module in local
            or module in found
        ):
            continue
        found.append(module)
    return found


def requirement_line(module: str) -> str:
    """`name==version` as installed here, else the distribution's name alone."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    dists = packages_distributions().get(module) or [_DISTRIBUTIONS.get(module, module)]
    name = dists[0]
    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name

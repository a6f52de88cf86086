"""What `mlcd validate` (and `mlcd run`, before any stage) can know from the files the
config names, without running anything: the data file and its target column (only the
header is read), the entrypoint's file and function and `model.params` against its
signature (the file is parsed with `ast`, never imported or executed), and the lint and
test paths. Every problem names `mlcd.yaml:line:column` and the key path.

Each check is a function of its own returning problems (and warnings), so new checks are
added next to the others.
"""

from __future__ import annotations

import ast
import csv
import difflib
import importlib.util
import os
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.config import KeyLocator, LoadedConfig
from mlcd.errors import UserInputError
from mlcd.security import redact

# an image repository as Docker reads one (its reference grammar, without tag or digest):
# an optional registry host[:port]/, then lower-case path components
_HOST = r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*")

_CSV = (".csv",)
_PARQUET = (".parquet", ".pq")
# classifiers without predict_proba: a probability metric cannot be computed for them
_NO_PROBA = frozenset(
    {
        "LinearSVC",
        "RidgeClassifier",
        "RidgeClassifierCV",
        "Perceptron",
        "PassiveAggressiveClassifier",
        "NearestCentroid",
    }
)
_PROBA_METRICS = ("roc_auc", "log_loss")


@dataclass
class Findings:
    """Problems (exit 2) and warnings (printed, not failing) of the checks."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Check:
    loaded: LoadedConfig
    at: KeyLocator

    @property
    def root(self) -> Path:
        return self.loaded.root


# --------------------------------------------------------------------------------------
# data


def _header(path: Path) -> list[str]:
    """The column names, reading only the CSV's first line or the Parquet footer."""
    if path.suffix.lower() in _PARQUET:
        import pyarrow.parquet as pq

        return [str(n) for n in pq.read_schema(path).names]
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def _has_rows(path: Path) -> bool:
    """Whether the data file holds a row after its header (a second CSV record, or a
    Parquet footer counting rows); read errors are left to the reader of the data."""
    try:
        if path.suffix.lower() in _PARQUET:
            import pyarrow.parquet as pq

            return bool(pq.read_metadata(path).num_rows)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            records = csv.reader(handle)
            next(records, None)
            return any(any(cell.strip() for cell in row) for row in records)
    except Exception:  # noqa: BLE001 - the header was readable; train reports the rest
        return True


def check_data(c: _Check, out: Findings) -> None:
    model = c.loaded.config.model
    path = c.loaded.resolve(model.data)
    where = c.at.where(("model", "data"))
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        out.problems.append(
            f"{where}: `{model.data}` {what} ({path}); the path is relative to the "
            "config file's folder"
        )
        return
    if path.suffix.lower() not in (*_CSV, *_PARQUET):
        out.problems.append(
            f"{where}: `{model.data}` has suffix `{path.suffix}`; mlcd reads .csv and .parquet"
        )
        return
    try:
        columns = _header(path)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        out.problems.append(f"{where}: cannot read the header of {path}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own kinds on a damaged file
        out.problems.append(
            f"{where}: cannot read the header of {path}: {type(exc).__name__}: {exc}"
        )
        return
    if not columns:
        out.problems.append(f"{where}: {path} is empty (no header row)")
        return
    if not _has_rows(path):
        out.problems.append(f"{where}: {path} has a header but no rows to train on")
        return
    if model.target not in columns:
        close = difflib.get_close_matches(model.target, columns, n=1, cutoff=0.6)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        shown = ", ".join(f"`{n}`" for n in columns[:8]) + (" …" if len(columns) > 8 else "")
        out.problems.append(
            f"{c.at.where(('model', 'target'))}: column `{model.target}` is not in "
            f"{model.data}{hint}; its columns: {shown}"
        )


# --------------------------------------------------------------------------------------
# entrypoint and params


def _entry_file(c: _Check, module: str) -> Path | str | None:
    """The entrypoint's source file; None when it is an installed module mlcd cannot
    read without importing; a message when it does not exist."""
    if module.endswith(".py"):
        path = (c.root / module).resolve()
        return path if path.is_file() else f"`{module}` does not exist ({path})"
    parts = module.split(".")
    base = c.root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    try:
        found = importlib.util.find_spec(parts[0])  # a top-level name: nothing runs
    except (ImportError, ValueError):
        found = None
    if found is None:
        return (
            f"no module `{module}` in the config's folder ({c.root}) or installed; "
            "use `path/to/file.py:function` for a file"
        )
    return None


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, also inside `if`/`try` blocks (guarded imports)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _top_level(block)
            for handler in node.handlers:
                yield from _top_level(handler.body)


def _definition(tree: ast.Module, name: str) -> ast.AST | None:
    found: ast.AST | None = None
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                found = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    found = node
    return found


_KINDS = {
    "int": {"int"},
    "float": {"float", "int"},
    "complex": {"float", "int"},
    "str": {"str"},
    "bool": {"bool"},
    "list": {"list"},
    "tuple": {"list"},
    "set": {"list"},
    "frozenset": {"list"},
    "Sequence": {"list"},
    "Iterable": {"list"},
    "Collection": {"list"},
    "dict": {"dict"},
    "Mapping": {"dict"},
    "MutableMapping": {"dict"},
    "None": {"none"},
    "NoneType": {"none"},
}
_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "none": "null",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "none"
    if isinstance(value, list | tuple | set | frozenset):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "other"


def _annotation_kinds(node: ast.expr | None) -> set[str] | None:
    """What YAML values an annotation takes, or None when mlcd cannot tell (Any, a class
    of the user's, a type variable …): then nothing is checked."""
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"none"}
        if isinstance(node.value, str):  # a quoted annotation
            try:
                return _annotation_kinds(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return None
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _annotation_kinds(node.left), _annotation_kinds(node.right)
        return None if left is None or right is None else left | right
    name = _name_of(node.value if isinstance(node, ast.Subscript) else node)
    if isinstance(node, ast.Subscript):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if name == "Optional":
            inner = _annotation_kinds(args[0])
            return None if inner is None else inner | {"none"}
        if name == "Union":
            kinds: set[str] = set()
            for arg in args:
                part = _annotation_kinds(arg)
                if part is None:
                    return None
                kinds |= part
            return kinds
        if name == "Literal":
            values = [a.value for a in args if isinstance(a, ast.Constant)]
            if len(values) != len(args):
                return None
            return {_kind(v) for v in values} | ({"int"} if float in map(type, values) else set())
        if name == "Annotated":
            return _annotation_kinds(args[0])
    kinds_for = _KINDS.get(name or "")
    return set(kinds_for) if kinds_for is not None else None


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _default_kinds(node: ast.expr) -> set[str] | None:
    """What a literal default says about the values a parameter takes: only the obvious
    (a number, true/false); a string default often also takes numbers in scikit-learn
    (`max_features="sqrt"` or 0.5), and None says nothing."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    kind = _kind(value)
    if kind == "bool":
        return {"bool"}
    if kind in ("int", "float"):
        return {"int", "float"}
    return None


def _masked(name: str, value: Any) -> Any:
    """The value as it may be shown: a secret (by its name or its shape) masked."""
    masked = redact.redact_params({name: value})
    return masked[name] if isinstance(masked, dict) else value


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


def _check_params(c: _Check, fn: ast.FunctionDef | ast.AsyncFunctionDef, out: Findings) -> None:
    params = c.loaded.config.model.params
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults: dict[str, ast.expr] = dict(
        zip(
            [a.arg for a in positional[len(positional) - len(args.defaults) :]],
            args.defaults,
            strict=True,
        )
    )
    for kwonly, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if default is not None:
            defaults[kwonly.arg] = default
    by_name = {a.arg: a for a in [*args.args, *args.kwonlyargs]}
    posonly = {a.arg for a in args.posonlyargs}
    label = f"`{fn.name}` ({c.loaded.config.model.entrypoint.split(':')[0]}:{fn.lineno})"
    for name, value in params.items():
        where = c.at.where(("model", "params", name), key=True)
        if name in posonly:
            out.problems.append(
                f"{where}: {label} takes `{name}` only by position; mlcd passes params by name"
            )
            continue
        arg = by_name.get(name)
        if arg is None:
            if args.kwarg is not None:
                continue
            known = list(by_name)
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            listed = ", ".join(f"`{k}`" for k in known) or "none"
            out.problems.append(
                f"{where}: {label} has no parameter `{name}`{hint}; its parameters: {listed}"
            )
            continue
        annotated = _annotation_kinds(arg.annotation)
        expected = annotated
        if expected is None and arg.annotation is None and name in defaults:
            expected = _default_kinds(defaults[name])
        kind = _kind(value)
        if expected is None or kind in expected or (kind == "int" and "float" in expected):
            continue
        shown_kinds = sorted(expected - {"int"} if "float" in expected else expected)
        words = " or ".join(_WORDS[k] for k in shown_kinds if k in _WORDS) or "another type"
        source = (
            f"its annotation `{ast.unparse(arg.annotation)}`"
            if annotated is not None and arg.annotation is not None
            else f"its default `{ast.unparse(defaults[name])}`"
        )
        out.problems.append(
            f"{c.at.where(('model', 'params', name))}: {label} expects {words} for `{name}` "
            f"({source}), got {_shown(_masked(name, value))}"
            + ("; annotate the parameter if it takes more" if annotated is None else "")
        )
    required = [
        a.arg
        for a in [*positional, *args.kwonlyargs]
        if a.arg not in defaults and a.arg not in posonly
    ]
    missing = [name for name in required if name not in params]
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        out.problems.append(
            f"{c.at.where(('model', 'params'), key=True)}: {label} requires {names}, which "
            "model.params does not give"
        )
    _check_probabilities(c, fn, out)


def _check_probabilities(
    c: _Check, fn: ast.FunctionDef | ast.AsyncFunctionDef, out: Findings
) -> None:
    """A warning, not an error: a probability metric on a classifier mlcd can see has no
    predict_proba (what the function builds is known only when it runs)."""
    evaluate = c.loaded.config.evaluate
    used = [
        (section, name)
        for section, table in (
            ("thresholds", evaluate.thresholds),
            ("max-regression", evaluate.max_regression),
        )
        for name in table
        if name in _PROBA_METRICS
    ]
    if not used or c.loaded.config.model.task != "classification":
        return
    built: str | None = None
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        name = _name_of(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if name in _NO_PROBA:
            built = name
        elif name == "SVC" and not _is_true(keywords.get("probability")):
            built = "SVC (without probability=True)"
        elif name == "SGDClassifier" and not _is_proba_loss(keywords.get("loss")):
            built = "SGDClassifier (with the hinge loss)"
    if built is None:
        return
    for section, name in used:
        out.warnings.append(
            f"{c.at.where(('evaluate', section, name), key=True)}: {name} needs predicted "
            f"probabilities, and `{fn.name}` builds a {built}, which has no predict_proba"
        )


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_proba_loss(node: ast.expr | None) -> bool:
    return not isinstance(node, ast.Constant) or node.value in ("log_loss", "log", "modified_huber")


def check_entrypoint(c: _Check, out: Findings) -> None:
    text = c.loaded.config.model.entrypoint
    module, _, function = text.rpartition(":")
    where = c.at.where(("model", "entrypoint"))
    located = _entry_file(c, module)
    if isinstance(located, str):
        out.problems.append(f"{where}: {located}; the path is relative to the config's folder")
        return
    if located is None:
        return  # an installed module: its source is not read at validate
    try:
        tree = ast.parse(located.read_bytes(), filename=str(located))
    except SyntaxError as exc:
        out.problems.append(
            f"{where}: {located}:{exc.lineno or 0}: the file is not valid Python ({exc.msg})"
        )
        return
    except (OSError, ValueError) as exc:
        out.problems.append(f"{where}: cannot read {located}: {exc}")
        return
    node = _definition(tree, function)
    if node is None:
        defined = sorted(
            n.name
            for n in _top_level(tree.body)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")
        )
        close = difflib.get_close_matches(function, defined, n=1, cutoff=0.6)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        out.problems.append(
            f"{where}: {located.name} defines no function `{function}`{hint}; functions "
            f"there: {', '.join(f'`{d}`' for d in defined) or 'none'}"
        )
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        _check_params(c, node, out)


# --------------------------------------------------------------------------------------
# paths


def _check_paths(c: _Check, out: Findings, section: str, paths: list[str]) -> None:
    for index, rel in enumerate(paths):
        path = c.loaded.resolve(rel)
        if not path.exists():
            out.problems.append(
                f"{c.at.where((section, 'paths', index))}: `{rel}` does not exist ({path}); "
                "paths are relative to the config file's folder"
            )


def check_lint_paths(c: _Check, out: Findings) -> None:
    _check_paths(c, out, "lint", c.loaded.config.lint.paths)


def check_test_paths(c: _Check, out: Findings) -> None:
    _check_paths(c, out, "test", c.loaded.config.test.paths)


def check_image_name(c: _Check, out: Findings) -> None:
    """The image repository builds use (MLCD_IMAGE, the workflow's `image` input, wins over
    image.name; empty is unset, as in Config.image_name): no spaces, no tag (mlcd adds it)."""
    given = os.environ.get("MLCD_IMAGE") or None
    value = given or c.loaded.config.image.name
    if value is None or _REPOSITORY.fullmatch(value.lower()):
        return
    where = "MLCD_IMAGE" if given else c.at.where(("image", "name"))
    out.problems.append(
        f"{where}: `{value}` is not an image repository (like "
        "`registry.example.com:5000/team/model`: lower-case letters, digits, `.`, `_`, "
        "`-` and `/`, no tag or digest, which mlcd adds)"
    )


def check_signing_key(c: _Check, out: Findings) -> None:
    """`signing.verify.key` names a readable EC public key (PEM): every deploy and the release
    itself verify with it, so a wrong path would otherwise surface only after the build."""
    section = c.loaded.config.signing_on
    if section is None or not section.verify.key:
        return
    from mlcd.signing import keys

    path = c.loaded.resolve(section.verify.key)
    where = f"{c.at.where(('signing', 'verify', 'key'))}: `{section.verify.key}` ({path})"
    relative = "the path is relative to the config's folder (docs/signing.md)"
    try:
        keys.load_public_pem(path.read_bytes(), where)
    except OSError as exc:
        out.problems.append(f"{where}: cannot read it ({exc.strerror}); {relative}")
    except UserInputError as exc:
        out.problems.append(f"{exc.message}; {relative}")


# The checks, and the stage that needs what each one checks (`mlcd run --only` runs the
# checks of the stages it runs).
CHECKS: tuple[tuple[str, Callable[[_Check, Findings], None]], ...] = (
    ("lint", check_lint_paths),
    ("test", check_test_paths),
    ("train", check_data),
    ("train", check_entrypoint),
    ("build", check_image_name),
    ("release", check_signing_key),
)


def inspect(loaded: LoadedConfig, stages: Collection[str] | None = None) -> Findings:
    """Run the checks (of `stages`, or all of them) and collect what they found."""
    check = _Check(loaded, KeyLocator(loaded.path))
    out = Findings()
    for stage, run in CHECKS:
        if stages is None or stage in stages:
            run(check, out)
    return out


def require(loaded: LoadedConfig, stages: Collection[str] | None = None) -> list[str]:
    """Raise UserInputError (exit 2) listing every problem; return the warnings."""
    found = inspect(loaded, stages)
    if found.problems:
        count = len(found.problems)
        raise UserInputError(
            f"{loaded.path}: {count} problem{'s' if count != 1 else ''} with the files it names",
            problems=found.problems,
        )
    return found.warnings

"""`model.json` as a type: what `mlcd train` writes beside the model, and every reader reads.

`ModelMeta` is the file (docs/internals.md, "Files between stages"; the feature schema in
docs/serving.md, "Inputs: the schema in model.json"). Train builds one and writes
`to_dict()`; serve, build, evaluate, deploy and the run page read it with `load()` or
`from_dict()`, which check every key they know and name the bad one
(`train/model.json: features[2].kind: 'colour' is not one of …`, exit 2). Keys this
module does not know are kept in `extra` and written back, so a file from a newer mlcd
or a key added by a registry survives a round trip.

Versions. `schema_version` is written since model.json got this type (version 2); a file
without it is version 1, written by an earlier mlcd (the registry keeps those): every key
but `task` and `features` may be absent, and a feature may lack `kind` (before the input
schema existed), `missing` and `accepts_null`. `feature_kind` is the one rule that gives
such a feature its kind; the model server, the typed rows and `dataset.read_holdout` all
ask it. A file with a `schema_version` above `SCHEMA_VERSION` is refused: it was written
by a newer mlcd, and this one cannot know what it means.

The serving image has no pydantic: this module imports only the standard library and
`mlcd.errors`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlcd.errors import UserInputError

SCHEMA_VERSION = 2
META_FILE = "model.json"

KINDS = ("number", "integer", "boolean", "category", "text", "datetime")
STRING_KINDS = frozenset({"category", "text", "datetime"})
TASKS = ("classification", "regression")
INPUT_FORMATS = ("array", "dataframe")
_STRING_DTYPES = frozenset({"object", "category", "string", "str"})
_BOOL_DTYPES = frozenset({"bool", "boolean"})


def feature_kind(dtype: str | None, categories: Any = None, kind: Any = None) -> str:
    """A feature's kind: the recorded `kind` when there is one, else the rule for files
    written before `kind` existed (their writer listed `categories` for every string and
    boolean column, and nothing else).

    - a bool dtype (numpy's `bool` or pandas' nullable `boolean`): boolean;
    - `categories` listed: category;
    - a datetime64 dtype: datetime;
    - a string dtype (object, category, string, str): text;
    - an integer dtype (int*, uint*, pandas' Int*/UInt*): integer; anything else: number.
    """
    if isinstance(kind, str):
        return kind
    lower = str(dtype or "float64").lower()
    if lower in _BOOL_DTYPES:
        return "boolean"
    if categories is not None:
        return "category"
    if lower.startswith("datetime64"):
        return "datetime"
    if lower in _STRING_DTYPES:
        return "text"
    return "integer" if lower.startswith(("int", "uint")) else "number"


def kind_of(feature: Mapping[str, Any]) -> str:
    """`feature_kind` of one entry of model.json's `features` (a dict)."""
    return feature_kind(feature.get("dtype"), feature.get("categories"), feature.get("kind"))


def is_string_kind(feature: Mapping[str, Any]) -> bool:
    """The column holds strings (category, text, datetime): read it as strings."""
    return kind_of(feature) in STRING_KINDS


# ----------------------------------------------------------------------------- checks


class _Reader:
    """Typed reads of one JSON object; every error names the source and the key path."""

    def __init__(self, raw: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self.raw = raw
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, what: str) -> UserInputError:
        return UserInputError(
            f"{self.source}: `{self.prefix}{key}` {what}",
            hint="re-run `mlcd train` to write it again",
        )

    def str_(self, key: str, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_json_type(value)}")
        return value

    def int_(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {_json_type(value)}")
        return value

    def float_(self, key: str) -> float | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {_json_type(value)}")
        return float(value)

    def number(self, key: str) -> int | float | None:
        """A number kept as written (an integer column's min stays an int)."""
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {_json_type(value)}")
        return value

    def bool_(self, key: str) -> bool | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_json_type(value)}")
        return value

    def list_(self, key: str) -> list[Any] | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, not {_json_type(value)}")
        return value

    def strings(self, key: str) -> list[str] | None:
        value = self.list_(key)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return value

    def dict_(self, key: str) -> dict[str, Any] | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, not {_json_type(value)}")
        return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if f.name != "extra")


# ----------------------------------------------------------------------------- the types


@dataclass(frozen=True)
class FeatureSpec:
    """One input column (an entry of `features`, in column order; docs/serving.md)."""

    name: str
    dtype: str = "float64"
    kind: str = "number"
    min: int | float | None = None
    max: int | float | None = None
    categories: list[Any] | None = None
    nullable: bool = False
    missing: int | None = None  # version 2: how many gaps the training data had
    accepts_null: bool | None = None  # the probe's answer; None: before the probe existed
    distinct: int | None = None  # string columns
    categories_truncated: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_string(self) -> bool:
        return self.kind in STRING_KINDS

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "integer")

    def finite_min(self) -> float | None:
        return _finite(self.min)

    def finite_max(self) -> float | None:
        return _finite(self.max)

    @classmethod
    def from_dict(cls, raw: Any, source: str, index: int) -> FeatureSpec:
        where = f"features[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise UserInputError(
                f"{source}: `{where}` needs a string `name`",
                hint="re-run `mlcd train` to write it again",
            )
        read = _Reader(raw, source, f"{where}.")
        dtype = read.str_("dtype") or "float64"
        categories = read.list_("categories")
        kind = read.str_("kind")
        if kind is not None and kind not in KINDS:
            raise read.fail("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        return cls(
            name=raw["name"],
            dtype=dtype,
            kind=feature_kind(dtype, categories, kind),
            min=read.number("min"),
            max=read.number("max"),
            categories=categories,
            nullable=bool(read.bool_("nullable")),
            missing=read.int_("missing"),
            accepts_null=read.bool_("accepts_null"),
            distinct=read.int_("distinct"),
            categories_truncated=read.bool_("categories_truncated"),
            extra={k: v for k, v in raw.items() if k not in _known(cls)},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "min": self.min,
            "max": self.max,
            "categories": self.categories,
            "nullable": self.nullable,
        }
        for key in ("missing", "distinct", "categories_truncated", "accepts_null"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out


def _finite(value: int | float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class InputSpec:
    """`input`: what the estimator takes (absent in files from before the probe)."""

    format: str | None = None  # array | dataframe
    fitted_on: str | None = None
    feature_names_in: list[str] | None = None
    probe_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> InputSpec:
        read = _Reader(raw, source, "input.")
        fmt = read.str_("format")
        if fmt is not None and fmt not in INPUT_FORMATS:
            raise read.fail("format", f"must be array or dataframe, not {fmt!r}")
        names = read.list_("feature_names_in")
        return cls(
            format=fmt,
            fitted_on=read.str_("fitted_on"),
            feature_names_in=[str(n) for n in names] if names is not None else None,
            probe_seconds=read.float_("probe_seconds"),
            extra={k: v for k, v in raw.items() if k not in _known(cls)},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "fitted_on": self.fitted_on,
            "feature_names_in": self.feature_names_in,
        }
        if self.probe_seconds is not None:
            out["probe_seconds"] = self.probe_seconds
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ProjectModule:
    """One of the project's own files the image ships in /opt/project."""

    module: str
    path: str
    sha256: str

    @classmethod
    def from_dict(cls, raw: Any, source: str, index: int) -> ProjectModule:
        where = f"project_modules[{index}]"
        if not isinstance(raw, dict):
            raise UserInputError(f"{source}: `{where}` must be an object {{module, path, sha256}}")
        read = _Reader(raw, source, f"{where}.")
        values = {key: read.str_(key) for key in ("module", "path", "sha256")}
        for key, value in values.items():
            if value is None:
                raise read.fail(key, "is missing")
        return cls(
            module=str(values["module"]), path=str(values["path"]), sha256=str(values["sha256"])
        )

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "path": self.path, "sha256": self.sha256}


# The top-level keys, in the order train writes them. `None` means absent (an older file):
# `to_dict` leaves those out, except `classes` (null for a regression model).
@dataclass(frozen=True)
class ModelMeta:
    """`train/model.json` (see the module's docstring)."""

    task: str
    features: tuple[FeatureSpec, ...]
    name: str | None = None
    target: str | None = None
    estimator: str | None = None
    entrypoint: str | None = None
    input: InputSpec | None = None
    classes: list[Any] | None = None
    params: dict[str, Any] | None = None
    seeded_params: list[str] | None = None  # the random_state params train set to `seed`
    data: str | None = None
    data_sha256: str | None = None
    rows: int | None = None
    train_rows: int | None = None
    holdout_rows: int | None = None
    seed: int | None = None
    test_size: float | None = None
    git_sha: str | None = None
    versions: dict[str, Any] | None = None
    fit_seconds: float | None = None
    fingerprint: str | None = None
    trusted_types: list[str] | None = None
    project_types: list[str] | None = None
    declared_types: list[str] | None = None
    project_modules: tuple[ProjectModule, ...] | None = None
    model_sha256: str | None = None
    reused_from: str | None = None  # the registry version whose model train reused
    version: str | None = None  # the served version, when a file names one
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, raw: Any, source: str = f"train/{META_FILE}") -> ModelMeta:
        """Check and read a parsed model.json; UserInputError (exit 2) names the bad key."""
        if not isinstance(raw, dict):
            raise UserInputError(f"{source}: model metadata must be a JSON object")
        read = _Reader(raw, source)
        version = read.int_("schema_version")
        if version is None:
            version = 1
        if version < 1 or version > SCHEMA_VERSION:
            raise read.fail(
                "schema_version",
                f"is {version}: this mlcd reads versions 1 to {SCHEMA_VERSION}"
                + (" (the file was written by a newer mlcd)" if version > SCHEMA_VERSION else ""),
            )
        task = raw.get("task")
        if task not in TASKS:
            raise read.fail("task", f"must be classification or regression, not {task!r}")
        items = raw.get("features")
        if not isinstance(items, list) or not items:
            raise read.fail("features", "must be a non-empty list")
        features = tuple(FeatureSpec.from_dict(item, source, i) for i, item in enumerate(items))
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise read.fail("features", f"names are not unique ({', '.join(twice)})")
        input_raw = read.dict_("input")
        spec = InputSpec.from_dict(input_raw, source) if input_raw is not None else None
        if (
            spec is not None
            and spec.format == "array"
            and not all(f.numeric or f.kind == "boolean" for f in features)
        ):
            raise read.fail("input.format", "array needs every feature to be a number")
        modules = read.list_("project_modules")
        return cls(
            task=str(task),
            features=features,
            name=read.str_("name"),
            target=read.str_("target"),
            estimator=read.str_("estimator"),
            entrypoint=read.str_("entrypoint"),
            input=spec,
            classes=read.list_("classes"),
            params=read.dict_("params"),
            seeded_params=read.strings("seeded_params"),
            data=read.str_("data"),
            data_sha256=read.str_("data_sha256"),
            rows=read.int_("rows"),
            train_rows=read.int_("train_rows"),
            holdout_rows=read.int_("holdout_rows"),
            seed=read.int_("seed"),
            test_size=read.float_("test_size"),
            git_sha=read.str_("git_sha"),
            versions=read.dict_("versions"),
            fit_seconds=read.float_("fit_seconds"),
            fingerprint=read.str_("fingerprint"),
            trusted_types=read.strings("trusted_types"),
            project_types=read.strings("project_types"),
            declared_types=read.strings("declared_types"),
            project_modules=(
                tuple(ProjectModule.from_dict(m, source, i) for i, m in enumerate(modules))
                if modules is not None
                else None
            ),
            model_sha256=read.str_("model_sha256"),
            reused_from=read.str_("reused_from"),
            version=read.str_("version"),
            schema_version=SCHEMA_VERSION,
            extra={k: v for k, v in raw.items() if k not in _known(cls)},
        )

    @classmethod
    def load(cls, path: Path) -> ModelMeta:
        """Read and check a model.json file; a missing or unreadable file is exit 2."""
        try:
            raw = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise UserInputError(
                f"{path} does not exist", hint="run `mlcd train` first, with the same --out"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: unreadable model metadata ({exc})") from exc
        return cls.from_dict(raw, str(path))

    # -------------------------------------------------------------- writing

    def to_dict(self) -> dict[str, Any]:
        """The JSON object train writes: the current schema, `schema_version` first."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for f in fields(self):
            if f.name in ("schema_version", "extra"):
                continue
            value = getattr(self, f.name)
            if value is None and f.name != "classes":
                continue
            if f.name == "features":
                value = [feature.to_dict() for feature in self.features]
            elif f.name == "input":
                value = self.input.to_dict() if self.input is not None else None
            elif f.name == "project_modules":
                value = [m.to_dict() for m in self.project_modules or ()]
            out[f.name] = value
        out.update(self.extra)
        return out

    def with_changes(self, **changes: Any) -> ModelMeta:
        return replace(self, **changes)

    # -------------------------------------------------------------- what readers ask

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature_dicts(self) -> list[dict[str, Any]]:
        """`features` as JSON objects, every one with its `kind` (the typed rows take these)."""
        return [f.to_dict() for f in self.features]

    @property
    def input_format(self) -> str | None:
        return self.input.format if self.input is not None else None

    @property
    def string_columns(self) -> bool:
        """Some feature is a string: the server takes a DataFrame (files before `input`)."""
        return any(f.is_string for f in self.features)

    def shipped_paths(self) -> list[str]:
        return [m.path for m in self.project_modules or ()]

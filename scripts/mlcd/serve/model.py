"""The served model: `model.skops` + `model.json` from a folder, and batched prediction."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mlcd import modelmeta
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.modelmeta import ModelMeta

Task = Literal["classification", "regression"]
# contracts.MODEL_FILE and META_FILE: the serving image has no pydantic, so it cannot import
# mlcd.contracts; tests/unit/test_contracts.py checks that the names are the same
MODEL_FILE = "model.skops"
META_FILE = modelmeta.META_FILE
# Final estimators whose `predict` is, by construction, the class of the largest
# `predict_proba`: for them one `predict_proba` call gives both answers.
_PROBA_ARGMAX = {
    "LogisticRegression",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "DecisionTreeClassifier",
    "ExtraTreeClassifier",
    "HistGradientBoostingClassifier",
}

warnings.filterwarnings("ignore", message="X does not have valid feature names")


GAP = np.nan  # the object that stands for a missing value in a validated row
_GAP = GAP
KINDS = modelmeta.KINDS
STRING_KINDS = modelmeta.STRING_KINDS


@dataclass(frozen=True)
class Feature:
    """One input column, from model.json's `features` (docs/serving.md)."""

    name: str
    dtype: str
    categories: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    kind: str = "number"
    accepts_null: bool = False
    nullable: bool = False

    @property
    def numeric(self) -> bool:
        """A number or an integer (a float64 in the array path)."""
        return self.kind in ("number", "integer")

    @property
    def is_string(self) -> bool:
        return self.kind in STRING_KINDS


@dataclass
class BatchOutput:
    """What one predict call returns, per row."""

    predictions: list[Any]
    probabilities: list[list[float]] | None
    scores: list[float]
    labels: list[int] = field(default_factory=list)  # class index per row (classification)


class ModelError(Exception):
    """The estimator raised: a 500 for the request, never a crash."""


def _load_meta(folder: Path) -> tuple[dict[str, Any], ModelMeta]:
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise UserInputError(
            f"no {META_FILE} in the model folder {folder}",
            hint="point MLCD_MODEL_DIR (or --model-dir) at the folder `mlcd train` wrote "
            "(.mlcd/train)",
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: unreadable model metadata ({exc})") from exc
    return meta, ModelMeta.from_dict(meta, str(path))


def _features(spec: ModelMeta, default_null: bool) -> list[Feature]:
    """The served features of a checked model.json (its kinds by `modelmeta.feature_kind`;
    `accepts_null`, absent before the probe existed, is what the estimator's tags say)."""
    return [
        Feature(
            name=f.name,
            dtype=f.dtype,
            categories=tuple(f.categories) if f.categories is not None else None,
            min=_num(f.min),
            max=_num(f.max),
            kind=f.kind,
            accepts_null=f.accepts_null if f.accepts_null is not None else default_null,
            nullable=f.nullable,
        )
        for f in spec.features
    ]


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _final_estimator(estimator: Any) -> Any:
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def _allows_nan(estimator: Any) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


def _jsonable(values: NDArray[Any]) -> list[Any]:
    out: list[Any] = values.tolist()
    return out


class ServedModel:
    """A fitted estimator with its schema. `predict` takes a 2-D array of rows."""

    def __init__(
        self, estimator: Any, meta: dict[str, Any] | ModelMeta, *, version: str = ""
    ) -> None:
        if isinstance(meta, ModelMeta):
            spec, meta = meta, meta.to_dict()
        else:  # `_path` and `_files`: where it was read from, the folder's digests (load)
            source = str(meta.get("_path", META_FILE))
            spec = ModelMeta.from_dict(
                {k: v for k, v in meta.items() if not k.startswith("_")}, source
            )
        path = Path(str(meta.get("_path", META_FILE)))
        self.estimator = estimator
        self.meta = meta
        self.spec = spec
        self.name = spec.name or "model"
        self.task: Task = "regression" if spec.task == "regression" else "classification"
        self.features = _features(spec, _allows_nan(estimator))
        self.feature_names = [f.name for f in self.features]
        self.feature_index = {name: i for i, name in enumerate(self.feature_names)}
        self.numeric = all(f.numeric for f in self.features)
        self.plain_numbers = all(f.kind == "number" for f in self.features)
        self.input_format = _input_format(spec, self.features)
        # the order of the estimator's columns (feature_names_in_), the features' by default
        names_in = spec.input.feature_names_in if spec.input is not None else None
        self.columns_in = (
            [str(n) for n in names_in]
            if names_in is not None and sorted(map(str, names_in)) == sorted(self.feature_names)
            else list(self.feature_names)
        )
        self.category_features = [i for i, f in enumerate(self.features) if f.kind == "category"]
        self.category_sets = {
            i: frozenset(self.features[i].categories or ()) for i in self.category_features
        }
        fingerprint = (spec.fingerprint or "")[:12]
        default = f"0.0.0+{fingerprint}" if fingerprint else "0.0.0+local"
        self.version = version or spec.version or default
        self.allow_nan = all(f.accepts_null for f in self.features)
        self.null_ok = tuple(f.accepts_null for f in self.features)
        self.has_proba = self.task == "classification" and hasattr(estimator, "predict_proba")
        self.proba_argmax = (
            self.has_proba and type(_final_estimator(estimator)).__name__ in _PROBA_ARGMAX
        )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            classes = getattr(_final_estimator(estimator), "classes_", None)
        if self.task == "classification":
            if classes is None:
                raise UserInputError(f"{path}: a classification model without `classes_`")
            self.classes_array: NDArray[Any] = np.asarray(classes)
        else:
            self.classes_array = np.asarray([])
        self.classes: list[Any] = _jsonable(self.classes_array)
        self.binary = len(self.classes) == 2

    @property
    def n_features(self) -> int:
        return len(self.features)

    def frame(self, rows: NDArray[Any]) -> Any:
        """The estimator's input: the float64 array itself (the array format), or a pandas
        DataFrame with the training dtypes, its columns in `feature_names_in_` order."""
        if self.input_format == "array":
            return rows
        import pandas as pd  # only DataFrame models have pandas in the image

        columns = {f.name: _column(pd, rows[:, i], f) for i, f in enumerate(self.features)}
        return pd.DataFrame(columns, columns=self.columns_in, copy=False)

    def predict(self, rows: NDArray[Any]) -> BatchOutput:
        """Predict a batch; any exception of the estimator becomes `ModelError`."""
        try:
            x = self.frame(rows)
            if self.task == "regression":
                values = np.asarray(self.estimator.predict(x), dtype=np.float64).reshape(-1)
                preds = _jsonable(values)
                return BatchOutput(predictions=preds, probabilities=None, scores=preds)
            if self.has_proba:
                proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
                if self.proba_argmax:
                    index = proba.argmax(axis=1)
                    labels = self.classes_array.take(index)
                else:
                    labels = np.asarray(self.estimator.predict(x))
                    index = np.searchsorted(self.classes_array, labels)
                scores = proba[:, 1] if self.binary else proba.max(axis=1)
                return BatchOutput(
                    predictions=_jsonable(labels),
                    probabilities=_jsonable(proba),
                    scores=_jsonable(scores),
                    labels=_jsonable(index),
                )
            labels = np.asarray(self.estimator.predict(x))
            index = np.searchsorted(self.classes_array, labels)
            return BatchOutput(
                predictions=_jsonable(labels),
                probabilities=None,
                scores=[1.0] * len(labels),
                labels=_jsonable(index),
            )
        except Exception as exc:
            raise ModelError(f"{type(exc).__name__}: {exc}") from exc

    def warm_up(self) -> None:
        """One prediction on a plausible row, so that the first request is not slow."""
        row: list[Any] = []
        for f in self.features:
            if f.kind == "boolean":
                row.append(False)
            elif f.kind == "datetime":
                row.append("2000-01-01")
            elif f.is_string:
                row.append(f.categories[0] if f.categories else "")
            elif f.min is not None and f.max is not None:
                middle = (f.min + f.max) / 2
                row.append(round(middle) if f.kind == "integer" else middle)
            else:
                row.append(0)
        dtype = np.float64 if self.input_format == "array" else object
        self.predict(np.asarray([row], dtype=dtype))

    def card(self) -> dict[str, Any]:
        """Model-card data for GET /v1/metadata."""
        keep = (
            "name",
            "task",
            "target",
            "features",
            "classes",
            "params",
            "data_sha256",
            "rows",
            "seed",
            "test_size",
            "git_sha",
            "versions",
            "fingerprint",
            "metrics",
            "created",
        )
        card = {k: self.meta[k] for k in keep if k in self.meta}
        card.update(
            {
                "name": self.name,
                "version": self.version,
                "task": self.task,
                "classes": self.classes if self.task == "classification" else None,
                "estimator": type(_final_estimator(self.estimator)).__name__,
                "accepts_nan": self.allow_nan,
                "input_format": self.input_format,
                # what the model signature's digests are checked against (docs/signing.md)
                "files": self.meta.get("_files", {}),
            }
        )
        return card


def _input_format(spec: ModelMeta, features: list[Feature]) -> str:
    """`array` (a float64 NumPy array) or `dataframe` (a pandas DataFrame); from_dict has
    checked that an `array` model has only numbers."""
    declared = spec.input_format
    if declared is None:  # model.json before `input`: arrays unless a column is a string
        numeric = all(f.numeric or f.kind == "boolean" for f in features)
        return "array" if numeric else "dataframe"
    return declared


def _column(pd: Any, values: NDArray[Any], feature: Feature) -> Any:
    """One DataFrame column of validated values (NaN for a gap) with the training dtype."""
    dtype = feature.dtype
    if feature.kind == "number":
        return values.astype(np.float64)
    if feature.kind == "integer":
        floats = values.astype(np.float64)
        if (
            not dtype.lower().startswith(("int", "uint"))
            or np.isnan(floats).any()
            or bool((np.abs(floats) >= 2.0**63).any())  # beyond int64: keep the floats
        ):
            return floats
        return floats.astype(dtype.lower())
    if feature.kind == "boolean":
        if dtype == "bool" and not any(v is _GAP for v in values):
            return values.astype(bool)
        return values
    if dtype.startswith("datetime64"):
        return pd.to_datetime(values, format="ISO8601", errors="coerce")
    if dtype == "str":
        return pd.array(values, dtype=pd.StringDtype(na_value=np.nan))
    if dtype == "string":
        return pd.array(values, dtype="string")
    return values


def served_files(folder: Path) -> dict[str, str]:
    """sha256 of each file of the model folder, named as the model signature names them
    (`model/model.skops`, `model/model.json`): GET /v1/metadata reports them."""
    return {
        f"model/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def load(folder: Path, *, version: str = "") -> ServedModel:
    """Load `model.skops` with the types `model.json` trusts; exit 2 on a bad folder."""
    meta, spec = _load_meta(folder)
    meta["_path"] = str(folder / META_FILE)
    meta["_files"] = served_files(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise UserInputError(
            f"no {MODEL_FILE} in the model folder {folder}",
            hint="point MLCD_MODEL_DIR (or --model-dir) at the folder `mlcd train` wrote",
        )
    trusted = spec.trusted_types or []
    try:
        import skops.io as sio
    except ImportError as exc:
        raise EnvironmentMissing(
            "the Python package `skops` is not installed", hint="pip install skops"
        ) from exc
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a damaged file, whatever skops says
        raise UserInputError(f"{path}: not a readable skops file ({exc})") from exc
    from mlcd.security import allowlist

    unexpected = sorted(t for t in untrusted if t not in set(trusted) or allowlist.is_dangerous(t))
    if unexpected:
        raise UserInputError(
            f"{path} needs types that {META_FILE} does not trust: {', '.join(unexpected)}",
            hint="retrain with `mlcd train`, which records the types the model needs",
        )
    try:
        estimator = sio.load(path, trusted=list(trusted))
    except Exception as exc:  # same: report, never trace back
        raise UserInputError(
            f"{path}: cannot load the model ({type(exc).__name__}: {exc})"
        ) from exc
    return ServedModel(estimator, meta, version=version)


def feature_summary(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")

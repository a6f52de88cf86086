"""Training data: reading CSV or Parquet, the checks before a fit, the split and the schema.

Every problem is a `UserInputError` (exit 2) that names the file, the column and, for a CSV,
the line of the first offending values.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlcd import modelmeta
from mlcd.errors import UserInputError

Task = Literal["classification", "regression"]
_CSV = (".csv", ".txt")
_PARQUET = (".parquet", ".pq")
_MAX_CATEGORIES = 100
_SHOWN = 3


def read_table(path: Path, *, key: str = "model.data") -> pd.DataFrame:
    """Read a CSV or Parquet file; empty or unreadable files are exit 2."""
    if not path.is_file():
        raise UserInputError(
            f"{key}: data file {path} does not exist",
            hint="paths in mlcd.yaml are relative to the config file's folder",
        )
    if path.stat().st_size == 0:
        raise UserInputError(f"{key}: data file {path} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in _PARQUET + _CSV:
        raise UserInputError(
            f"{key}: {path} has suffix `{suffix}`; mlcd reads .csv and .parquet files"
        )
    try:
        frame = pd.read_parquet(path) if suffix in _PARQUET else pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise UserInputError(f"{key}: data file {path} is empty (no header, no rows)") from exc
    except Exception as exc:  # pandas/pyarrow raise many kinds
        raise UserInputError(
            f"{key}: cannot read {path} ({type(exc).__name__}: {exc})".rstrip()
        ) from exc
    if len(frame) == 0:
        raise UserInputError(f"{key}: data file {path} has a header but no rows")
    return frame


def _where(path: Path, rows: list[int]) -> str:
    """Where rows are: CSV line numbers (header is line 1) or Parquet row numbers."""
    if path.suffix.lower() in _CSV:
        return "line " + ", ".join(str(r + 2) for r in rows)
    return "row " + ", ".join(str(r) for r in rows)


def _is_text(series: pd.Series) -> bool:
    return bool(pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series))


def check_frame(frame: pd.DataFrame, path: Path, *, target: str, task: Task) -> None:
    """Check a training table before anything is fitted; raise exit 2 listing every problem."""
    if target not in frame.columns:
        close = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
        suggestion = f" (did you mean `{close[0]}`?)" if close else ""
        shown = ", ".join(str(c) for c in list(frame.columns)[:20])
        raise UserInputError(
            f"model.target: the target column `{target}` is not in {path}{suggestion}",
            hint=f"its columns are: {shown}",
        )
    if frame.shape[1] < 2:
        raise UserInputError(f"model.data: {path} has no feature columns besides `{target}`")
    problems: list[str] = []
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        problems.append(f"duplicate column names: {', '.join(duplicated)}")
    for name in frame.columns:
        series = frame[name]
        column = f"column `{name}`"
        if series.isna().all():
            problems.append(f"{column} is empty (every value is null)")
            continue
        if pd.api.types.is_complex_dtype(series):
            problems.append(f"{column} holds complex numbers, which no estimator takes")
        elif pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(
            series
        ):
            problems.append(
                f"{column} holds dates or durations ({series.dtype}); turn them into numbers "
                "(e.g. days since an origin) in the data"
            )
        elif _is_text(series):
            problems.extend(_text_column_problems(series, column, path))
    if problems:
        raise UserInputError(
            f"model.data: {path}: {len(problems)} problem{'s' * (len(problems) != 1)} in the data",
            problems=problems,
        )
    labels = frame[target]
    missing = np.flatnonzero(labels.isna().to_numpy())
    if missing.size:
        raise UserInputError(
            f"model.target: {missing.size} row(s) of {path} have no `{target}` value "
            f"({_where(path, [int(r) for r in missing[:_SHOWN]])})",
            hint="drop or fill those rows",
        )
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
            raise UserInputError(
                f"model.task is regression but the target `{target}` in {path} is not numeric "
                f"(dtype {labels.dtype})"
            )
    else:
        counts = labels.value_counts()
        if len(counts) < 2:
            raise UserInputError(
                f"model.target: `{target}` in {path} has only one class "
                f"({counts.index[0]!r}); classification needs at least two"
            )
        rare = [str(k) for k, v in counts.items() if v < 2]
        if rare:
            raise UserInputError(
                f"model.target: class(es) {', '.join(rare)} of `{target}` in {path} have a "
                "single row; a stratified split needs at least two rows per class"
            )
        if pd.api.types.is_float_dtype(labels) and len(counts) > 50:
            raise UserInputError(
                f"model.target: `{target}` in {path} has {len(counts)} distinct float values; "
                "is model.task meant to be regression?"
            )


def _text_column_problems(series: pd.Series, column: str, path: Path) -> list[str]:
    values = series.dropna()
    kinds = {type(v) for v in values}
    odd = [k for k in kinds if not issubclass(k, str | int | float | bool | np.generic)]
    if odd:
        names = ", ".join(sorted(k.__name__ for k in odd))
        return [f"{column} holds values of type {names}, which no estimator takes"]
    numeric = pd.to_numeric(values.astype(str), errors="coerce")
    share = float(numeric.notna().mean())
    if 0.5 <= share < 1.0:
        bad_mask = numeric.isna().to_numpy()
        bad_rows = [int(series.index.get_loc(i)) for i in values.index[bad_mask][:_SHOWN]]
        shown = ", ".join(repr(str(v)) for v in values[bad_mask][:_SHOWN])
        count = int(bad_mask.sum())
        plural = "s" * (count != 1)
        where = _where(path, bad_rows)
        return [f"{column} is numeric but holds {count} text value{plural} ({shown} at {where})"]
    return []


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def split(frame: pd.DataFrame, *, target: str, task: Task, test_size: float, seed: int) -> Split:
    """A seeded split, stratified for classification; the holdout keeps the file's columns."""
    from sklearn.model_selection import train_test_split

    stratify = frame[target] if task == "classification" else None
    n_holdout = int(np.ceil(test_size * len(frame)))
    if n_holdout < 2 or len(frame) - n_holdout < 2:
        raise UserInputError(
            f"model.test-size {test_size} leaves too few rows on one side of the split "
            f"({len(frame)} rows in the data)"
        )
    if stratify is not None and n_holdout < stratify.nunique():
        raise UserInputError(
            f"model.test-size {test_size} holds out {n_holdout} rows, fewer than the "
            f"{stratify.nunique()} classes: raise model.test-size or add rows"
        )
    train, holdout = train_test_split(
        frame, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
    )
    return Split(train=train, holdout=holdout)


# A string column is free text, not a category, when it has more than _MAX_CATEGORIES
# distinct values, or more distinct values than half its non-null rows (and at least
# _TEXT_MIN_DISTINCT of them), or when its values average _TEXT_WORDS words or more.
_TEXT_MIN_DISTINCT = 20
_TEXT_WORDS = 3.0
_DATE_SAMPLE = 1000
KINDS = ("number", "integer", "boolean", "category", "text", "datetime")


def _is_bool_column(values: pd.Series) -> bool:
    return len(values) > 0 and all(isinstance(v, bool | np.bool_) for v in values)


def _looks_like_dates(values: pd.Series) -> bool:
    """Every value (of a sample) is an ISO 8601 date or date-time Python can parse."""
    from datetime import datetime

    sample = values.iloc[:_DATE_SAMPLE]
    if len(sample) == 0:
        return False
    for value in sample:
        text = str(value)
        if not 8 <= len(text) <= 40 or not text[:4].isdigit() or "-" not in text[:8]:
            return False
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return False
    return True


def string_kind(values: pd.Series) -> str:
    """`category`, `text` or `datetime` for the non-null values of a string column."""
    if _looks_like_dates(values):
        return "datetime"
    distinct = int(values.nunique())
    if distinct > _MAX_CATEGORIES:
        return "text"
    if distinct >= _TEXT_MIN_DISTINCT and distinct > 0.5 * len(values):
        return "text"
    words = float(values.astype(str).str.split().str.len().mean()) if len(values) else 0.0
    return "text" if words >= _TEXT_WORDS else "category"


def feature_schema(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Per feature, in column order: what the server needs to rebuild the model's input.

    `name`, `dtype` (pandas' dtype at fit), `kind` (number, integer, boolean, category,
    text, datetime), `nullable` (the training data had gaps), `missing` (how many),
    `min`/`max` (numbers), `categories` (category and boolean columns, at most
    _MAX_CATEGORIES, `categories_truncated` when cut), `distinct` (string columns).
    `accepts_null` is added by the probe of the fitted model (mlcd.inputschema).
    See docs/serving.md.
    """
    schema: list[dict[str, Any]] = []
    for name in features.columns:
        series = features[name]
        values = series.dropna()
        entry: dict[str, Any] = {
            "name": str(name),
            "dtype": str(series.dtype),
            "kind": "number",
            "min": None,
            "max": None,
            "categories": None,
            "nullable": bool(len(values) < len(series)),
            "missing": int(len(series) - len(values)),
        }
        if pd.api.types.is_bool_dtype(series) or (
            pd.api.types.is_object_dtype(series) and _is_bool_column(values)
        ):
            entry["kind"] = "boolean"
            entry["categories"] = [False, True]
        elif pd.api.types.is_numeric_dtype(series):
            entry["kind"] = "integer" if pd.api.types.is_integer_dtype(series) else "number"
            entry["min"] = _py(series.min())
            entry["max"] = _py(series.max())
        elif pd.api.types.is_datetime64_any_dtype(series):
            entry["kind"] = "datetime"
        else:
            text = values.astype(str)
            entry["kind"] = string_kind(text)
            entry["distinct"] = int(text.nunique())
            if entry["kind"] == "category":
                cats = sorted(set(text))
                entry["categories"] = cats[:_MAX_CATEGORIES]
                if len(cats) > _MAX_CATEGORIES:  # pragma: no cover - text above that
                    entry["categories_truncated"] = True
        schema.append(entry)
    return schema


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_holdout(path: Path, features: list[dict[str, Any]], target: str) -> pd.DataFrame:
    """Read `train/holdout.csv` back with the dtypes of `model.json`'s feature schema."""
    dtypes: dict[str, Any] = {}
    for feature in features:
        if modelmeta.is_string_kind(feature):  # the one rule for a feature's kind
            dtypes[str(feature["name"])] = str
    if not path.is_file():
        raise UserInputError(
            f"{path} does not exist", hint="run `mlcd train` first, with the same --out"
        )
    frame = pd.read_csv(path, dtype=dtypes)
    missing = [f["name"] for f in features if f["name"] not in frame.columns]
    if missing or target not in frame.columns:
        raise UserInputError(
            f"{path} lacks column(s) {', '.join([*missing, *([target] * (target not in frame))])}",
            hint="re-run `mlcd train`",
        )
    return frame

"""The input schema of a fitted model, recorded at train in model.json (docs/serving.md).

`describe` takes the feature schema of the training data (`dataset.feature_schema`: each
column's kind, dtype, gaps, categories) and asks the fitted pipeline two questions through
the model server's own request path (`mlcd.serve.schema` + `ServedModel.predict`), so that
what is recorded is what the server will do:

- the input format: `array` (a float64 NumPy array, the fast path) when every feature is a
  number and the pipeline predicts the same on an array as on the DataFrame (it selects
  nothing by name); otherwise `dataframe` (a pandas DataFrame with the training dtypes);
- per column, `accepts_null`: a held-out row with a gap in that column is predicted, and
  the prediction is finite. This is what the pipeline does (an imputer, a
  `OneHotEncoder(handle_unknown="ignore")`, a model that takes NaN), not what a tag says.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from typing import Any

import numpy as np

from mlcd import dataset, typedrows

_NUMERIC = ("number", "integer", "boolean")
_SAMPLE = 200


def _outputs_finite(model: Any, rows: Any) -> list[bool]:
    """Per row: the server's prediction for it is finite (raises when the model fails)."""
    out = model.predict(rows)
    ok = []
    for i, prediction in enumerate(out.predictions):
        fine = not (isinstance(prediction, float) and not math.isfinite(prediction))
        if out.probabilities is not None:
            fine = fine and all(math.isfinite(p) for p in out.probabilities[i])
        ok.append(fine)
    return ok


def _served(estimator: Any, meta: dict[str, Any]) -> Any:
    from mlcd.serve.model import ServedModel

    return ServedModel(estimator, meta)


def _parse(model: Any, records: list[dict[str, Any]]) -> Any:
    from mlcd.serve.schema import parse_predict

    return parse_predict(model, json.dumps({"records": records}).encode())


def _base_record(features: list[dict[str, Any]], frames: list[Any]) -> dict[str, Any]:
    """A row of plausible values: per column the first value the data has."""
    record: dict[str, Any] = {}
    for feature in features:
        name = feature["name"]
        value: Any = None
        for frame in frames:
            values = frame[name].dropna()
            if len(values):
                value = typedrows.json_value(values.iloc[0], typedrows.feature_kind(feature))
                break
        record[name] = value
    return record


def _array_agrees(estimator: Any, sample: Any) -> bool:
    """The pipeline predicts the same on the float64 array as on the DataFrame."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            framed = np.asarray(estimator.predict(sample))
            arrayed = np.asarray(estimator.predict(sample.to_numpy(dtype=np.float64)))
            if framed.shape != arrayed.shape:
                return False
            if framed.dtype.kind == "f":
                same = bool(np.allclose(framed, arrayed, rtol=1e-12, atol=1e-12, equal_nan=True))
            else:
                same = bool((framed == arrayed).all())
            if same and hasattr(estimator, "predict_proba"):
                a = np.asarray(estimator.predict_proba(sample), dtype=np.float64)
                b = np.asarray(
                    estimator.predict_proba(sample.to_numpy(dtype=np.float64)), dtype=np.float64
                )
                same = a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))
    except Exception:  # noqa: BLE001 - any failure on an array means: give it a DataFrame
        return False
    return same


def describe(
    estimator: Any,
    x_train: Any,
    x_holdout: Any,
    *,
    task: str,
    name: str = "model",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`features` and `input` for model.json (see the module's docstring)."""
    clock = time.perf_counter()
    features = dataset.feature_schema(x_train)
    names_in = getattr(estimator, "feature_names_in_", None)
    input_meta: dict[str, Any] = {
        "format": "dataframe",
        "fitted_on": "dataframe",
        "feature_names_in": [str(n) for n in names_in] if names_in is not None else None,
    }
    base = _base_record(features, [x_holdout, x_train])
    if all(f["kind"] in _NUMERIC for f in features):
        sample = x_holdout.dropna().head(_SAMPLE)
        if len(sample) == 0:
            import pandas as pd

            sample = pd.DataFrame([base], columns=x_train.columns).astype(x_train.dtypes)
        if _array_agrees(estimator, sample):
            input_meta["format"] = "array"
    probe_features = [dict(f, accepts_null=True) for f in features]
    meta = {
        "name": name,
        "task": task,
        "features": probe_features,
        "input": input_meta,
    }
    model = _served(estimator, meta)
    accepts = _probe_nulls(model, features, base)
    for feature, ok in zip(features, accepts, strict=True):
        feature["accepts_null"] = ok
    input_meta["probe_seconds"] = round(time.perf_counter() - clock, 4)
    return features, input_meta


def _probe_nulls(model: Any, features: list[dict[str, Any]], base: dict[str, Any]) -> list[bool]:
    """Per column: the held-out row with a gap there is predicted, finitely."""
    records = []
    for feature in features:
        record = dict(base)
        record[feature["name"]] = None
        records.append(record)
    answers = _try_finite(model, records)
    if answers is not None:
        return answers
    answers = []  # some column cannot take a gap: ask one by one
    for record in records:
        one = _try_finite(model, [record])
        answers.append(bool(one and one[0]))
    return answers


def _try_finite(model: Any, records: list[dict[str, Any]]) -> list[bool] | None:
    try:
        return _outputs_finite(model, _parse(model, records).rows)
    except Exception:  # noqa: BLE001 - the model (or the validation) refused these rows
        return None

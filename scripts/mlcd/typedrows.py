"""Typed rows: the held-out rows as a client sends them, from model.json's feature schema.

One place makes the rows that the build's contract test, the rollout's synthetic traffic
and the shadow comparison send: records with JSON types per feature kind (numbers as
numbers, integers as integers, booleans as true/false, categories and text as strings,
dates as ISO 8601 strings) and `null` for a gap. The file is read as `mlcd evaluate` reads
it (`dataset.read_holdout`: string columns as strings, pandas' missing-value markers as
gaps), so the in-process predictions and the requests see the same values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlcd import modelmeta

STRING_KINDS = modelmeta.STRING_KINDS
# the V2 (KServe) datatype of each feature kind; the model server's metadata route uses it too,
# so this module must keep importing only the standard library at import time
V2_DATATYPE = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "category": "BYTES",
    "text": "BYTES",
    "datetime": "BYTES",
}


def feature_kind(feature: Mapping[str, Any]) -> str:
    """The feature's kind: `mlcd.modelmeta.kind_of`, the one rule (model.json files from
    before `kind` get it from the dtype and the categories)."""
    return modelmeta.kind_of(feature)


def json_value(value: Any, kind: str) -> Any:
    """One cell of a DataFrame as a client sends it (None for a gap)."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str):
        value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat) and not isinstance(value, str):
        if str(value) == "NaT":
            return None
        return str(isoformat())
    if kind == "boolean":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind in STRING_KINDS:
        return str(value)
    return value


def records_from_frame(frame: Any, features: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a DataFrame as records {feature: value}, in the features' order."""
    import pandas as pd

    names = [str(f["name"]) for f in features]
    kinds = [feature_kind(f) for f in features]
    out: list[dict[str, Any]] = []
    columns = [frame[name].tolist() for name in names]
    for values in zip(*columns, strict=True):
        record = {}
        for name, kind, value in zip(names, kinds, values, strict=True):
            gap = value is None or (not isinstance(value, str) and bool(pd.isna(value)))
            record[name] = None if gap else json_value(value, kind)
        out.append(record)
    return out


def holdout_frame(path: Path, features: Sequence[dict[str, Any]], target: str) -> Any:
    """holdout.csv read as evaluate reads it (the in-process view of the rows)."""
    from mlcd import dataset

    return dataset.read_holdout(path, list(features), target)


def holdout_records(
    path: Path, features: Sequence[dict[str, Any]], target: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """The held-out rows as typed records."""
    frame = holdout_frame(path, features, target)
    if limit is not None:
        frame = frame.head(limit)
    return records_from_frame(frame, features)


def instances(records: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    """The same rows positionally, in model order: {"instances": [[...], ...]}."""
    return [[record[name] for name in names] for record in records]


def v2_columns(
    records: Sequence[dict[str, Any]], features: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """An Open Inference Protocol infer body with one input per column (MLServer's pandas
    codec convention: strings as BYTES, shape [N]); gaps are JSON null."""
    inputs = []
    for feature in features:
        name = str(feature["name"])
        kind = feature_kind(feature)
        inputs.append(
            {
                "name": name,
                "datatype": V2_DATATYPE.get(kind, "BYTES"),
                "shape": [len(records)],
                "data": [record[name] for record in records],
            }
        )
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def v2_tensor(records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """An infer body with one FP64 tensor [N, F] (all-numeric models)."""
    data = [
        float(record[n]) if record[n] is not None else None for record in records for n in names
    ]
    return {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [len(records), len(names)],
                "data": data,
            }
        ]
    }

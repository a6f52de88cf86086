"""One rule for a feature's kind (mlcd.modelmeta.feature_kind).

The kind of a feature in a model.json written before `kind` existed was inferred three
times: `dataset.read_holdout` (which columns to read as strings), the model server
(`serve/model._legacy_kind`) and the typed rows (`typedrows.feature_kind`). The first
disagreed with the other two: a string column without `categories` was `text` to the
server and the typed rows, but `read_holdout` let pandas guess its type, so a code like
"02134" came back as the number 2134 and the rows sent to the server were not the held-out
rows. The first test shows it through the public functions only (it fails on the code
before the rule was shared); the others pin the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlcd import dataset, modelmeta, typedrows
from mlcd.modelmeta import FeatureSpec
from mlcd.serve.model import ServedModel

# A feature as a model.json without `kind` describes it (no `kind`, no `categories`).
_LEGACY_TEXT = {"name": "zip", "dtype": "object", "min": None, "max": None, "categories": None}


def test_read_holdout_reads_a_column_as_the_kind_rule_says(tmp_path: Path) -> None:
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("zip,y\n02134,1\n10001,0\n", "utf-8")
    features: list[dict[str, Any]] = [dict(_LEGACY_TEXT)]
    assert typedrows.feature_kind(features[0]) == "text"
    frame = dataset.read_holdout(holdout, features, "y")
    assert frame["zip"].tolist() == ["02134", "10001"]
    records = typedrows.holdout_records(holdout, features, "y")
    assert records == [{"zip": "02134"}, {"zip": "10001"}]


# (dtype, categories) as a model.json without `kind` records them -> the kind
_RULE = [
    ("float64", None, "number"),
    ("Float64", None, "number"),
    ("int64", None, "integer"),
    ("uint8", None, "integer"),
    ("Int64", None, "integer"),  # pandas' nullable integer
    ("bool", [False, True], "boolean"),
    ("bool", None, "boolean"),
    ("boolean", [False, True], "boolean"),  # pandas' nullable boolean
    ("object", ["a", "b"], "category"),
    ("str", ["a"], "category"),
    ("category", ["a"], "category"),
    ("datetime64[ns]", ["2024-01-01"], "category"),  # the old writer listed dates as values
    ("object", None, "text"),
    ("string", None, "text"),
    ("str", None, "text"),
    ("datetime64[ns]", None, "datetime"),
    (None, None, "number"),
]


@pytest.mark.parametrize(("dtype", "categories", "kind"), _RULE)
def test_one_rule_for_a_features_kind(dtype: str | None, categories: Any, kind: str) -> None:
    feature: dict[str, Any] = {"name": "f", "dtype": dtype, "categories": categories}
    assert modelmeta.feature_kind(dtype, categories) == kind
    # every place that needs the kind asks the same rule
    assert typedrows.feature_kind(feature) == kind
    assert FeatureSpec.from_dict(feature, "model.json", 0).kind == kind
    served = ServedModel(_Estimator(), {"task": "regression", "features": [feature]})
    assert served.features[0].kind == kind


def test_a_recorded_kind_wins_over_the_dtype() -> None:
    feature = {"name": "f", "dtype": "int64", "kind": "category", "categories": [1, 2]}
    assert typedrows.feature_kind(feature) == "category"
    assert modelmeta.kind_of(feature) == "category"


@pytest.mark.parametrize(("dtype", "categories", "kind"), _RULE)
def test_read_holdout_reads_strings_exactly_for_the_string_kinds(
    tmp_path: Path, dtype: str | None, categories: Any, kind: str
) -> None:
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("f,y\n007,1\n010,0\n", "utf-8")
    frame = dataset.read_holdout(
        holdout, [{"name": "f", "dtype": dtype, "categories": categories}], "y"
    )
    as_strings = frame["f"].tolist() == ["007", "010"]
    assert as_strings is (kind in modelmeta.STRING_KINDS)


class _Estimator:
    """Enough of a fitted regressor for ServedModel's constructor."""

    def predict(self, rows: Any) -> list[float]:
        return [0.0] * len(rows)

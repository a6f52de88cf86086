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

from mlcd import dataset, typedrows

# A feature as a model.json without `kind` describes it (no `kind`, no `categories`).
_LEGACY_TEXT = {"name": "zip", "dtype": "object", "min": None, "max": None, "categories": None}


@pytest.mark.unit
def test_read_holdout_reads_a_column_as_the_kind_rule_says(tmp_path: Path) -> None:
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("zip,y\n02134,1\n10001,0\n", "utf-8")
    features: list[dict[str, Any]] = [dict(_LEGACY_TEXT)]
    assert typedrows.feature_kind(features[0]) == "text"
    frame = dataset.read_holdout(holdout, features, "y")
    assert frame["zip"].tolist() == ["02134", "10001"]
    records = typedrows.holdout_records(holdout, features, "y")
    assert records == [{"zip": "02134"}, {"zip": "10001"}]

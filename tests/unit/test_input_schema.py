"""The input schema (model.json `features` + `input`) and the server's typed input paths."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcd import cli, dataset, inputschema, typedrows
from mlcd.serve.app import App
from mlcd.serve.model import load
from tests.support.mixed import write_project

# ------------------------------------------------------------------ schema inference


def _kinds(frame: pd.DataFrame) -> dict[str, str]:
    return {f["name"]: f["kind"] for f in dataset.feature_schema(frame)}


def test_kinds_gaps_and_categories_come_from_the_data() -> None:
    rows = 60
    frame = pd.DataFrame(
        {
            "price": np.linspace(1, 2, rows),
            "count": np.arange(rows),
            "flag": [True, False] * (rows // 2),
            "flag_gaps": pd.Series([True, None, False] * (rows // 3), dtype=object),
            "color": (["red", "green", None] * rows)[:rows],
            "note": [f"ticket number {i} is broken" for i in range(rows)],
            "day": [f"2024-01-{1 + i % 28:02d}" for i in range(rows)],
        }
    )
    schema = {f["name"]: f for f in dataset.feature_schema(frame)}
    assert {k: v["kind"] for k, v in schema.items()} == {
        "price": "number",
        "count": "integer",
        "flag": "boolean",
        "flag_gaps": "boolean",
        "color": "category",
        "note": "text",
        "day": "datetime",
    }
    assert schema["color"]["categories"] == ["green", "red"]
    assert schema["color"]["nullable"] is True
    assert schema["color"]["missing"] == rows // 3
    assert schema["price"]["nullable"] is False
    assert schema["note"]["categories"] is None
    assert schema["note"]["distinct"] == rows
    assert schema["price"]["min"] == 1.0
    assert schema["price"]["max"] == 2.0


def test_many_distinct_strings_are_text_few_are_categories() -> None:
    # 25 distinct single words in 30 rows: more than half distinct, at least 20 → text
    assert _kinds(pd.DataFrame({"w": [f"w{i % 25}" for i in range(30)]}))["w"] == "text"
    # 10 distinct in 200 rows → category; 19 distinct in 20 rows → category (< 20 distinct)
    assert _kinds(pd.DataFrame({"w": [f"w{i % 10}" for i in range(200)]}))["w"] == "category"
    assert _kinds(pd.DataFrame({"w": [f"w{i % 19}" for i in range(20)]}))["w"] == "category"
    # over 100 distinct → text whatever the share
    assert _kinds(pd.DataFrame({"w": [f"w{i % 150}" for i in range(3000)]}))["w"] == "text"
    # three words or more on average → text even with few distinct values
    assert _kinds(pd.DataFrame({"w": ["the printer is broken", "cannot log in"] * 50}))["w"] == (
        "text"
    )
    # not every value a date → not datetime
    assert _kinds(pd.DataFrame({"w": ["2024-01-01", "soon"] * 10}))["w"] == "category"


def _breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


def test_a_numeric_pipeline_gets_the_array_path_and_a_named_selection_a_dataframe() -> None:
    x, y = _breast_cancer()
    plain = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=500))])
    plain.fit(x, y)
    features, meta = inputschema.describe(plain, x, x.head(50), task="classification")
    assert meta["format"] == "array"
    assert meta["feature_names_in"] == [str(c) for c in x.columns]
    assert not any(f["accepts_null"] for f in features)  # LogisticRegression refuses NaN

    named = Pipeline(
        [
            ("cols", ColumnTransformer([("s", StandardScaler(), ["mean radius", "mean area"])])),
            ("c", LogisticRegression(max_iter=500)),
        ]
    ).fit(x, y)
    _, meta = inputschema.describe(named, x, x.head(50), task="classification")
    assert meta["format"] == "dataframe"

    hgb = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    features, _ = inputschema.describe(hgb, x, x.head(50), task="classification")
    assert all(f["accepts_null"] for f in features)  # the model itself takes NaN


# ------------------------------------------------------------------ the mixed model


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    config = write_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUB_SHA", "c" * 40)
        patch.delenv("MLCD_REGISTRY_PATH", raising=False)
        patch.delenv("MLCD_REUSE", raising=False)
        assert cli.main(["train", "--config", str(config), "--out", str(root / ".mlcd")]) == 0
    return root / ".mlcd" / "train"


@pytest.fixture(scope="module")
def mixed_app(mixed: Path) -> App:
    application = App(load(mixed), workers=1)
    application.ready = True
    return application


@pytest.fixture(scope="module")
def typed(mixed: Path) -> tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]]:
    meta = json.loads((mixed / "model.json").read_text())
    frame = typedrows.holdout_frame(mixed / "holdout.csv", meta["features"], "label")
    model = load(mixed)
    expected = model.estimator.predict(frame[model.feature_names]).tolist()
    return typedrows.records_from_frame(frame, meta["features"]), expected, meta["features"]


def post(app: App, body: Any, path: str = "/predict") -> tuple[int, Any]:
    response = app.handle_now("POST", path, json.dumps(body).encode())
    return response.status, json.loads(response.body)


def test_train_records_the_schema_and_the_probe(mixed: Path) -> None:
    meta = json.loads((mixed / "model.json").read_text())
    assert meta["input"]["format"] == "dataframe"
    assert meta["input"]["fitted_on"] == "dataframe"
    assert meta["input"]["feature_names_in"] == [
        "age",
        "visits",
        "plan",
        "region",
        "note",
        "active",
    ]
    by_name = {f["name"]: f for f in meta["features"]}
    assert {n: f["kind"] for n, f in by_name.items()} == {
        "age": "number",
        "visits": "integer",
        "plan": "category",
        "region": "category",
        "note": "text",
        "active": "boolean",
    }
    assert by_name["age"]["nullable"]
    assert by_name["plan"]["nullable"]
    assert not by_name["region"]["nullable"]
    # the probe: imputed columns take a gap, TfidfVectorizer and the passed-through flag do not
    assert {n: f["accepts_null"] for n, f in by_name.items()} == {
        "age": True,
        "visits": True,
        "plan": True,
        "region": True,
        "note": False,
        "active": False,
    }
    assert by_name["plan"]["categories"] == ["basic", "pro", "team"]


def test_both_bodies_and_v2_columns_give_the_in_process_predictions(
    mixed_app: App, typed: tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]]
) -> None:
    records, expected, features = typed
    assert any(r["age"] is None for r in records)  # the held-out rows have gaps
    status, data = post(mixed_app, {"records": records})
    assert status == 200, data
    assert data["predictions"] == expected
    names = [f["name"] for f in features]
    status, data = post(mixed_app, {"instances": typedrows.instances(records, names)})
    assert (status, data["predictions"]) == (200, expected)
    body = typedrows.v2_columns(records, features)
    status, data = post(mixed_app, body, "/v2/models/mixed/infer")
    assert status == 200, data
    assert data["outputs"][0]["data"] == expected
    assert data["outputs"][1]["shape"] == [len(records), 2]


def test_v2_metadata_lists_one_input_per_column(mixed_app: App) -> None:
    meta = json.loads(mixed_app.handle_now("GET", "/v2/models/mixed").body)
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("age", "FP64"),
        ("visits", "INT64"),
        ("plan", "BYTES"),
        ("region", "BYTES"),
        ("note", "BYTES"),
        ("active", "BOOL"),
    ]


def test_unseen_category_gap_and_long_text_are_answered_and_counted(
    mixed_app: App, typed: tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]]
) -> None:
    record = dict(typed[0][0])
    before = _unknown(mixed_app, "plan")
    record |= {"plan": "enterprise", "age": None, "region": None, "note": "broken " * 20_000}
    status, data = post(mixed_app, {"records": [record, record]})
    assert status == 200, data
    assert _unknown(mixed_app, "plan") == before + 2
    assert _unknown(mixed_app, "region") == 0  # a gap is not an unknown category


def _unknown(app: App, feature: str) -> float:
    text = app.handle_now("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(f'mlcd_unknown_category_total{{feature="{feature}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no unknown-category counter for {feature}")


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("note", None, "null (a missing value), and this model cannot take one"),
        ("active", None, "null"),
        ("age", "forty", "expected a number, got text"),
        ("age", True, "expected a number"),
        ("age", float("inf"), "Infinity"),
        ("visits", 2.5, "expected an integer"),
        ("active", 1, "expected true or false"),
        ("plan", 3, "expected text"),
        ("note", ["a"], "expected text"),
    ],
)
def test_client_mistakes_are_422_naming_row_and_column(
    mixed_app: App,
    typed: tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]],
    column: str,
    value: Any,
    words: str,
) -> None:
    good = typed[0][0]
    bad = dict(good, **{column: value})
    for body in (
        {"records": [good, bad]},
        {"instances": [list(good.values()), list(bad.values())]},
    ):
        status, data = post(mixed_app, body)
        assert status == 422, (body, data)
        assert words in data["error"]
        assert "row 1" in data["error"]
        assert f"`{column}`" in data["error"]


def test_a_missing_column_is_422_in_every_form(
    mixed_app: App, typed: tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]]
) -> None:
    records, _, features = typed
    record = dict(records[0])
    del record["plan"]
    status, data = post(mixed_app, {"records": [record]})
    assert status == 422
    assert "row 0: missing feature(s): plan" in data["error"]
    body = typedrows.v2_columns(records[:2], features)
    body["inputs"] = [i for i in body["inputs"] if i["name"] != "note"]
    status, data = post(mixed_app, body, "/v2/models/mixed/infer")
    assert (status, data["error"]) == (422, "missing input(s): note")


# Per kind: whatever JSON value a column gets, the answer is 200 when the value fits the
# kind (and a gap where the probe said the pipeline takes one), else a 422 naming the
# row and the column; never a 5xx.
_ANY = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def _fits(kind: str, value: Any, accepts_null: bool) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return accepts_null
    if kind in ("number", "integer"):
        if type(value) is int:
            return True
        if type(value) is not float or math.isinf(value):
            return False
        return kind == "number" or value.is_integer()
    if kind == "boolean":
        return type(value) is bool
    return isinstance(value, str)


@pytest.mark.parametrize("column", ["age", "visits", "plan", "note", "active"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_ANY)
def test_every_value_of_every_kind_is_200_or_a_named_4xx(
    mixed_app: App,
    typed: tuple[list[dict[str, Any]], list[Any], list[dict[str, Any]]],
    column: str,
    value: Any,
) -> None:
    records, _, features = typed
    feature = next(f for f in features if f["name"] == column)
    record = dict(records[1], **{column: value})
    response = mixed_app.handle_now("POST", "/predict", json.dumps({"records": [record]}).encode())
    data = json.loads(response.body)
    if _fits(feature["kind"], value, feature["accepts_null"]):
        assert response.status == 200, (value, data)
        assert all(math.isfinite(p) for p in data["probabilities"][0])
    else:
        assert response.status == 422, (value, data)
        assert f"row 0, feature `{column}`" in data["error"]


def test_a_date_column_takes_iso_dates_only(tmp_path: Path) -> None:
    x, y = _breast_cancer()
    frame = x[["mean radius"]].copy()
    frame["seen"] = [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(len(frame))]
    pipe = Pipeline(
        [
            ("cols", ColumnTransformer([("s", StandardScaler(), ["mean radius"])])),
            ("c", LogisticRegression()),
        ]
    ).fit(frame, y)
    features, meta = inputschema.describe(pipe, frame, frame.head(20), task="classification")
    assert [f["kind"] for f in features] == ["number", "datetime"]
    from mlcd.serve.model import ServedModel

    app = App(
        ServedModel(
            pipe, {"name": "d", "task": "classification", "features": features, "input": meta}
        )
    )
    ok = post(app, {"records": [{"mean radius": 12.0, "seen": "2024-03-01T10:00:00"}]})
    assert ok[0] == 200, ok
    bad = post(app, {"records": [{"mean radius": 12.0, "seen": "yesterday"}]})
    assert bad[0] == 422
    assert "expected an ISO 8601 date" in bad[1]["error"]


# ------------------------------------------------- typed rows: contract test and load test


class _InProcessClient:
    """The contract test's client, answered by an App in this process (no socket)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def post_json(self, path: str, data: Any) -> Any:
        from mlcd.serve.client import Reply

        response = self.app.handle_now("POST", path, json.dumps(data).encode())
        return Reply(response.status, {}, response.body)


def test_the_contract_compares_every_body_form(mixed: Path, mixed_app: App) -> None:
    from mlcd.image import contract

    model = load(mixed)
    records, expected = contract.read_holdout(mixed / "holdout.csv", model)
    result = contract.ContractResult(passed=False, rows=len(records))
    contract._compare(_InProcessClient(mixed_app), model, records, expected, result)  # type: ignore[arg-type]
    assert result.problems == []
    assert result.forms == dict.fromkeys(("records", "instances", "v2 columns"), len(records))
    assert result.agree == len(records) == 80


def test_a_contract_difference_names_the_form_and_the_row(mixed: Path, mixed_app: App) -> None:
    from mlcd.image import contract

    model = load(mixed)
    records, expected = contract.read_holdout(mixed / "holdout.csv", model)
    flipped = ["stay" if e == "churn" else "churn" for e in expected[:3]] + expected[3:]
    result = contract.ContractResult(passed=False, rows=len(records))
    contract._compare(_InProcessClient(mixed_app), model, records, flipped, result)  # type: ignore[arg-type]
    assert result.agree == len(records) - 3
    assert any(p.startswith("records: row 0 {") and "in process" in p for p in result.problems)
    assert any(p.startswith("v2 columns: row 2") for p in result.problems)


def test_a_numeric_contract_also_sends_the_v2_tensor(tmp_path: Path) -> None:
    from mlcd.image import contract
    from tests.support.models import make_model_dir

    folder = make_model_dir(tmp_path, "logreg")
    model = load(folder)
    app = App(model)
    records, expected = contract.read_holdout(folder / "holdout.csv", model)
    result = contract.ContractResult(passed=False, rows=len(records))
    contract._compare(_InProcessClient(app), model, records, expected, result)  # type: ignore[arg-type]
    assert result.problems == []
    assert set(result.forms) == {"records", "instances", "v2 columns", "v2 tensor"}
    assert result.agree == len(records)


def test_the_load_test_sends_typed_rows(mixed: Path) -> None:
    from mlcd.rollout.loadgen import holdout_rows

    rows = holdout_rows(mixed / "holdout.csv", "label")
    assert len(rows) == 80
    assert list(rows[0]) == ["age", "visits", "plan", "region", "note", "active"]
    assert {type(r["visits"]) for r in rows} == {int}
    assert {type(r["active"]) for r in rows} == {bool}
    assert {type(r["age"]) for r in rows} == {float, type(None)}
    assert {type(r["plan"]) for r in rows} == {str, type(None)}
    assert all(isinstance(r["note"], str) and " " in r["note"] for r in rows)

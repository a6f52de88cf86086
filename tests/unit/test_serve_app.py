"""The model server's routes and validation, without sockets (`App.handle_now`)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcd.serve.app import App, PredictJob
from mlcd.serve.model import ServedModel, load
from tests.support.models import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("logreg"), "logreg")


@pytest.fixture(scope="module")
def app(model_dir: Path) -> App:
    served = load(model_dir, version="1.2.3")
    application = App(served, workers=1, recent_capacity=50)
    application.ready = True
    return application


@pytest.fixture(scope="module")
def rows(model_dir: Path) -> list[list[float]]:
    lines = (model_dir / "holdout.csv").read_text().splitlines()[1:]
    return [[float(v) for v in line.split(",")[:-1]] for line in lines]


def post(app: App, body: Any, path: str = "/predict") -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = app.handle_now("POST", path, raw)
    return response.status, json.loads(response.body) if response.body else None


def test_predict_matches_the_estimator(app: App, rows: list[list[float]]) -> None:
    status, data = post(app, {"instances": rows})
    assert status == 200
    expected = app.model.estimator.predict(np.asarray(rows)).tolist()
    assert data["predictions"] == expected
    proba = app.model.estimator.predict_proba(np.asarray(rows))
    assert np.allclose(data["probabilities"], proba)
    assert data["model_version"] == "1.2.3"


def test_records_in_any_key_order_equal_instances(app: App, rows: list[list[float]]) -> None:
    names = app.model.feature_names
    records = [dict(reversed(list(zip(names, row, strict=True)))) for row in rows[:5]]
    assert (
        post(app, {"records": records})[1]["predictions"]
        == post(app, {"instances": rows[:5]})[1]["predictions"]
    )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"", 400, "empty body"),
        (b"   ", 400, "empty body"),
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "UTF-8"),
        (b"[" * 100_000, 400, "malformed JSON"),
        (b'{"instances": [[' + b"1" * 5000 + b"]]}", 400, "malformed JSON"),
        ([1, 2], 422, "JSON object"),
        ({}, 422, "exactly one of"),
        ({"instances": [], "records": []}, 422, "exactly one of"),
        ({"instances": []}, 422, "empty"),
        ({"instances": "x"}, 422, "must be a list"),
        ({"instances": [[1.0, 2.0]]}, 422, "has 2 values"),
        ({"instances": [5]}, 422, "row 0 is int"),
        ({"records": [{"nope": 1}]}, 422, "unknown feature"),
        ({"records": [1]}, 422, "must be an object"),
    ],
)
def test_client_mistakes_are_4xx_with_a_message(
    app: App, body: Any, status: int, words: str
) -> None:
    got, data = post(app, body)
    assert got == status
    assert words in data["error"]


def test_value_errors_name_the_row_and_feature(app: App, rows: list[list[float]]) -> None:
    names = app.model.feature_names
    for bad, words in [
        ("12.5", "expected a number, got text"),
        (None, "null"),
        (True, "expected a number"),
        ([1], "expected a number"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (-float("inf"), "-Infinity"),
        (10**400, "too large"),
    ]:
        row = list(rows[0])
        row[3] = bad
        status, data = post(app, json.dumps({"instances": [rows[0], row]}).encode())
        assert status == 422, bad
        assert words in data["error"], (bad, data)
        assert "row 1" in data["error"]
        assert names[3] in data["error"]


def test_missing_and_unknown_names_are_listed(app: App, rows: list[list[float]]) -> None:
    names = app.model.feature_names
    record = dict(zip(names, rows[0], strict=True))
    del record[names[0]]
    record["mean radiuss"] = 1.0
    status, data = post(app, {"records": [record]})
    assert status == 422
    assert "missing feature(s): mean radius" in data["error"]
    assert "unknown feature(s): mean radiuss" in data["error"]
    assert "did you mean `mean radius`" in data["error"]


def test_nan_is_accepted_when_the_model_takes_it(tmp_path: Path) -> None:
    served = load(make_model_dir(tmp_path, "hgb"))
    assert served.allow_nan
    application = App(served)
    row: list[Any] = [1.0] * served.n_features
    row[0] = None
    row[1] = float("nan")
    assert post(application, json.dumps({"instances": [row]}).encode())[0] == 200
    row[2] = float("inf")
    assert post(application, json.dumps({"instances": [row]}).encode())[0] == 422


def test_routes(app: App, model_dir: Path) -> None:
    assert app.handle_now("GET", "/healthz").status == 200
    assert app.handle_now("GET", "/readyz").status == 200
    assert app.handle_now("GET", "/v2/health/live").status == 200
    assert app.handle_now("GET", "/v2/health/ready").status == 200
    assert app.handle_now("GET", "/nope").status == 404
    wrong = app.handle_now("GET", "/predict")
    assert wrong.status == 405
    assert (b"allow", b"POST") in wrong.headers
    card = json.loads(app.handle_now("GET", "/v1/metadata").body)
    assert card["name"] == "breast-cancer"
    assert card["version"] == "1.2.3"
    assert len(card["features"]) == 30
    served = hashlib.sha256((model_dir / "model.skops").read_bytes()).hexdigest()
    assert card["files"]["model/model.skops"] == served
    meta = json.loads(app.handle_now("GET", "/v2/models/breast-cancer").body)
    assert meta["inputs"][0]["shape"] == [-1, 30]
    assert app.handle_now("GET", "/v2/models/other").status == 404
    assert app.handle_now("GET", "/v2/models/breast-cancer/ready").status == 200


def test_not_ready_and_draining_are_503(model_dir: Path) -> None:
    application = App(load(model_dir))
    assert application.handle_now("GET", "/readyz").status == 503
    application.ready = True
    application.draining = True
    assert json.loads(application.handle_now("GET", "/readyz").body)["status"] == "draining"


def test_v2_infer_tensor_and_columns(app: App, rows: list[list[float]]) -> None:
    flat = [v for row in rows[:3] for v in row]
    body = {
        "id": "abc",
        "inputs": [{"name": "input-0", "shape": [3, 30], "datatype": "FP64", "data": flat}],
    }
    status, data = post(app, body, "/v2/models/breast-cancer/infer")
    assert status == 200
    assert data["id"] == "abc"
    outputs = {o["name"]: o for o in data["outputs"]}
    expected = app.model.estimator.predict(np.asarray(rows[:3])).tolist()
    assert outputs["predict"]["data"] == expected
    assert outputs["predict_proba"]["shape"] == [3, 2]
    names = app.model.feature_names
    columns = {
        "inputs": [
            {"name": n, "shape": [3], "datatype": "FP64", "data": [r[i] for r in rows[:3]]}
            for i, n in enumerate(names)
        ],
        "outputs": [{"name": "predict"}],
    }
    assert post(app, columns, "/v2/models/breast-cancer/versions/1/infer")[0] == 404
    status, data = post(app, columns, "/v2/models/breast-cancer/versions/1.2.3/infer")
    assert status == 200
    assert [o["name"] for o in data["outputs"]] == ["predict"]
    assert data["outputs"][0]["data"] == expected
    bad = {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": flat}]}
    assert post(app, bad, "/v2/models/breast-cancer/infer")[0] == 422


def test_metrics_and_recent_predictions(model_dir: Path, rows: list[list[float]]) -> None:
    application = App(load(model_dir, version="9.9.9"), recent_capacity=3)
    application.ready = True
    for i in range(5):
        application.handle_now(
            "POST", "/predict", json.dumps({"instances": rows[:2]}).encode(), request_id=f"r{i}"
        )
    application.handle_now("POST", "/predict", b"{", request_id="bad")
    text = application.handle_now("GET", "/metrics").body.decode()
    assert 'mlcd_requests_total{route="/predict",status="200"} 5' in text
    assert 'mlcd_requests_total{route="/predict",status="400"} 1' in text
    assert 'mlcd_request_duration_seconds_bucket{route="/predict",le="+Inf"} 6' in text
    assert 'mlcd_request_duration_seconds_bucket{route="/predict",le="0.0005"}' in text
    assert "mlcd_request_duration_seconds_count" in text
    counts = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("mlcd_predictions_total{")
    ]
    assert sum(counts) == 10
    assert 'mlcd_prediction_score_bucket{le="+Inf"} 10' in text
    assert "mlcd_prediction_score_count 10" in text
    assert 'mlcd_model_info{name="breast-cancer",version="9.9.9"} 1' in text
    recent = json.loads(application.handle_now("GET", "/v1/recent-predictions?limit=10").body)[
        "predictions"
    ]
    assert [r["request_id"] for r in recent] == ["r3", "r4", "bad"]  # bounded: 3, newest last
    assert recent[0]["status"] == 200
    assert recent[-1]["status"] == 400
    assert (
        recent[0]["predictions"]
        == application.model.estimator.predict(np.asarray(rows[:2])).tolist()
    )
    assert all(r["latency_ms"] >= 0 and r["time"] > 0 for r in recent)
    assert application.handle_now("GET", "/v1/recent-predictions?limit=x").status == 400


class _Exploding:
    """An estimator that raises for rows whose first value is negative."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: Any) -> Any:
        if (np.asarray(x)[:, 0] < 0).any():
            raise ValueError("negative input")
        return np.tile([0.25, 0.75], (len(x), 1))

    def predict(self, x: Any) -> Any:
        return np.ones(len(x), dtype=int)


def test_a_model_error_is_a_500_for_that_request_only(model_dir: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    application = App(ServedModel(_Exploding(), meta))
    good = application.handle(
        "POST", "/predict", b'{"instances": [' + b"[1" + b",1" * 29 + b"]]}", "a", 0.0
    )
    bad = application.handle(
        "POST", "/predict", b'{"instances": [' + b"[-1" + b",1" * 29 + b"]]}", "b", 0.0
    )
    # both requests are valid: they are queued as jobs; the model fails only when it runs
    assert isinstance(good, PredictJob)
    assert isinstance(bad, PredictJob)
    application.run_batch([good, bad])
    ok = application.finish(good)
    failed = application.finish(bad)
    assert ok.status == 200
    assert json.loads(ok.body)["predictions"] == [1]
    assert failed.status == 500
    assert "negative input" in json.loads(failed.body)["error"]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
_value = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.none()
    | st.booleans()
    | st.text(max_size=5)
    | st.lists(st.floats(), max_size=2)
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "instances", "records", "v2"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    if kind == "instances":
        width = draw(st.sampled_from([0, 1, 29, 30, 30, 31]))
        rows = draw(
            st.lists(
                st.lists(_value | st.floats(-50, 50), min_size=width, max_size=width), max_size=4
            )
        )
        return json.dumps({"instances": rows}).encode()
    if kind == "records":
        names = ["mean radius", "mean texture", "worst area", "x", ""]
        recs = draw(
            st.lists(st.dictionaries(st.sampled_from(names), _value, max_size=5), max_size=3)
        )
        return json.dumps({"records": recs}).encode()
    shape = draw(st.lists(st.integers(-1, 40), min_size=0, max_size=3))
    data = draw(st.lists(_value | st.floats(0, 10), max_size=70))
    tensor = {
        "name": draw(st.sampled_from(["input-0", "mean radius"])),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP64", "BYTES", "FP9"])),
        "data": data,
    }
    return json.dumps({"inputs": [tensor]}).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies())
def test_generated_bodies_never_get_a_5xx(app: App, body: bytes) -> None:
    for path in ("/predict", "/v2/models/breast-cancer/infer"):
        response = app.handle_now("POST", path, body)
        assert response.status < 500, (body[:200], response.body[:300])
        data = json.loads(response.body)
        assert ("error" in data) == (response.status >= 400)
        if response.status == 200 and path == "/predict":
            assert all(not isinstance(p, float) or math.isfinite(p) for p in data["predictions"])

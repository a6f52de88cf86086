"""MLflow's scoring protocol (`POST /invocations`, `/ping`, `/health`, `/version`) and
SageMaker's Accept header, without sockets: the same rows and checks as /predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcd import __version__, cli, typedrows
from mlcd.serve import __main__ as serve_main
from mlcd.serve.app import App
from mlcd.serve.model import load
from tests.support.mixed import write_project
from tests.support.models import make_model_dir

INV = "/invocations"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    served = load(make_model_dir(tmp_path_factory.mktemp("logreg"), "logreg"), version="1.2.3")
    application = App(served, workers=1, recent_capacity=50)
    application.ready = True
    return application


@pytest.fixture(scope="module")
def rows(app: App) -> list[list[float]]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(6, app.model.n_features)).round(4).tolist()


def call(
    app: App, body: Any, content_type: str = "application/json", accept: str = ""
) -> tuple[int, str, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    response = app.handle_now("POST", INV, raw, headers=headers)
    return response.status, response.content_type.decode(), response.body


def predictions(app: App, body: Any, content_type: str = "application/json") -> list[Any]:
    status, _, raw = call(app, body, content_type)
    assert status == 200, raw
    data = json.loads(raw)
    assert list(data) == ["predictions"]  # MLflow's shape: nothing else
    return list(data["predictions"])


def test_every_input_format_gives_the_predictions_of_predict(
    app: App, rows: list[list[float]]
) -> None:
    names = app.model.feature_names
    expected = app.model.estimator.predict(np.asarray(rows)).tolist()
    records = [dict(zip(names, r, strict=True)) for r in rows]
    columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    reordered = list(reversed(names))
    bodies: list[Any] = [
        {"dataframe_split": {"columns": names, "data": rows, "index": list(range(len(rows)))}},
        {"dataframe_split": {"columns": reordered, "data": [r[::-1] for r in rows]}},
        {"dataframe_split": {"data": rows}},
        {"dataframe_records": records},
        {"instances": rows},
        {"instances": records},
        {"inputs": rows},
        {"inputs": columns},
        {"inputs": rows, "params": {"anything": 1}},  # ignored, as MLflow does without a schema
    ]
    for body in bodies:
        assert predictions(app, body) == expected, list(body)
    csv_text = ",".join(names) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    assert predictions(app, csv_text.encode(), "text/csv") == expected
    headerless = "\n".join(",".join(map(str, r)) for r in rows).encode()  # SageMaker's CSV
    assert predictions(app, headerless, "text/csv; charset=utf-8") == expected
    lines = csv_text.splitlines()  # pandas' to_csv() with its index: an unnamed first column
    indexed = "\n".join(["," + lines[0]] + [f"{i},{line}" for i, line in enumerate(lines[1:])])
    assert predictions(app, indexed.encode(), "text/csv") == expected


def test_accept_text_csv_answers_one_prediction_a_line(app: App, rows: list[list[float]]) -> None:
    expected = app.model.estimator.predict(np.asarray(rows)).tolist()
    status, content_type, body = call(app, {"inputs": rows}, accept="text/csv")
    assert (status, content_type.split(";")[0]) == (200, "text/csv")
    assert body.decode().splitlines() == [str(v) for v in expected]
    status, content_type, body = call(app, {"inputs": rows}, accept="application/json, */*")
    assert status == 200
    assert json.loads(body)["predictions"] == expected
    status, _, body = call(app, {"inputs": rows}, accept="image/png")
    assert status == 406
    assert json.loads(body)["error_code"] == "BAD_REQUEST"


def test_bad_input_gets_mlflows_error_format(app: App, rows: list[list[float]]) -> None:
    n = app.model.n_features
    cases: list[tuple[Any, str]] = [
        (b"{", "malformed JSON"),
        ([[1.0] * n], "Received a list"),
        ({"rows": rows}, "exactly one of the input fields"),
        ({"inputs": rows, "instances": rows}, "exactly one of the input fields"),
        ({"inputs": [[1.0] * (n - 1)]}, f"takes {n} features"),
        ({"inputs": [["x"] + [1.0] * (n - 1)]}, "expected a number"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}, "unknown feature"),
        ({"dataframe_split": [1]}, "`dataframe_split` must be an object"),
        ({"dataframe_records": [[1.0] * n]}, "list of objects"),
        ({"inputs": rows, "params": [1]}, "`params` must be an object"),
        ({"inputs": []}, "is empty"),
    ]
    for body, words in cases:
        status, content_type, raw = call(app, body)
        data = json.loads(raw)
        assert (status, content_type) == (400, "application/json"), (body, data)
        assert data["error_code"] == "BAD_REQUEST", data
        assert words in data["message"], data
    bad_csv = (",".join(app.model.feature_names[:-1]) + ",zzz\n" + "1," * (n - 1) + "1\n").encode()
    status, _, raw = call(app, bad_csv, "text/csv")
    assert status == 400
    assert "unknown column(s): zzz; missing column(s): worst" in json.loads(raw)["message"]


def test_content_types_as_mlflow_refuses_them(app: App, rows: list[list[float]]) -> None:
    for content_type, words in (
        ("application/xml", "only supports the following content types"),
        ("application/json; charset=latin-1", "only supports UTF-8"),
        ("application/json; format=pandas-split", "Unrecognized content type parameters"),
    ):
        status, got, raw = call(app, {"inputs": rows}, content_type)
        assert (status, got.split(";")[0]) == (415, "text/plain")
        assert words in raw.decode()
    wrong = app.handle_now("GET", INV)
    assert wrong.status == 405
    assert json.loads(wrong.body)["error_code"] == "BAD_REQUEST"


def test_health_routes_and_metrics(app: App, rows: list[list[float]]) -> None:
    for path in ("/ping", "/health"):
        assert app.handle_now("GET", path).status == 200
    version = app.handle_now("GET", "/version")
    assert version.status == 200
    assert version.body.decode() == __version__
    app.ready = False
    try:
        assert app.handle_now("GET", "/ping").status == 503
    finally:
        app.ready = True
    call(app, {"inputs": rows})
    call(app, b"{")
    text = app.metrics.render()
    assert 'mlcd_requests_total{route="/invocations",status="200"}' in text
    assert 'mlcd_requests_total{route="/invocations",status="400"}' in text
    recent = [r["route"] for r in app.recent.recent(100, None)]
    assert recent.count(INV) >= 2  # errors are kept for the judge, as on /predict


def test_the_image_entry_point_takes_serve_and_nothing_else() -> None:
    assert serve_main.main(["serve", "extra"]) == 2
    assert serve_main.main(["--port", "1"]) == 2


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[App, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("mixed")
    config = write_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUB_SHA", "c" * 40)
        patch.delenv("MLCD_REGISTRY_PATH", raising=False)
        patch.delenv("MLCD_REUSE", raising=False)
        assert cli.main(["train", "--config", str(config), "--out", str(root / ".mlcd")]) == 0
    folder = Path(root / ".mlcd" / "train")
    meta = json.loads((folder / "model.json").read_text())
    frame = typedrows.holdout_frame(folder / "holdout.csv", meta["features"], "label")
    records = typedrows.records_from_frame(frame, meta["features"])[:5]
    application = App(load(folder), workers=1)
    application.ready = True
    return application, records


def test_a_dataframe_model_takes_split_records_and_csv(
    mixed: tuple[App, list[dict[str, Any]]],
) -> None:
    app, records = mixed
    names = app.model.feature_names
    expected = json.loads(
        app.handle_now("POST", "/predict", json.dumps({"records": records}).encode()).body
    )["predictions"]
    split = {"columns": names, "data": [[r[n] for n in names] for r in records]}
    assert predictions(app, {"dataframe_split": split}) == expected
    assert predictions(app, {"dataframe_records": records}) == expected
    assert predictions(app, {"inputs": records}) == expected

    def cell(value: Any) -> str:
        if value is None:
            return ""
        text = str(value)
        return f'"{text}"' if "," in text else text

    csv_text = (
        ",".join(names) + "\n" + "\n".join(",".join(cell(r[n]) for n in names) for r in records)
    )
    assert predictions(app, csv_text.encode(), "text/csv") == expected
    bad = [{**records[0], "visits": "many"}]
    status, _, raw = call(app, {"dataframe_records": bad})
    data = json.loads(raw)
    assert status == 400, data
    assert "feature `visits`" in data["message"], data

"""Open Inference Protocol details: binary data extension, gzip, versions, paths, ids."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcd import cli, typedrows
from mlcd.serve.app import App
from mlcd.serve.model import load
from tests.support.mixed import write_project
from tests.support.models import make_model_dir

INFER = "/v2/models/breast-cancer/infer"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    application = App(
        load(make_model_dir(tmp_path_factory.mktemp("v2"), "logreg"), version="2.0.1")
    )
    application.ready = True
    return application


@pytest.fixture(scope="module")
def rows(app: App) -> np.ndarray:
    rng = np.random.default_rng(0)
    low = np.asarray([f.min for f in app.model.features])
    high = np.asarray([f.max for f in app.model.features])
    return low + (high - low) * rng.random((5, app.model.n_features))


def _binary_request(rows: np.ndarray, *, binary_output: bool) -> tuple[bytes, int]:
    raw = rows.astype("<f4").tobytes()
    header: dict[str, object] = {
        "id": "",
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    if binary_output:
        header["parameters"] = {"binary_data_output": True}
    text = json.dumps(header).encode()
    return text + raw, len(text)


def test_binary_tensors_in_and_out(app: App, rows: np.ndarray) -> None:
    body, length = _binary_request(rows, binary_output=True)
    response = app.handle_now(
        "POST", INFER, body, headers={"Inference-Header-Content-Length": str(length)}
    )
    assert response.status == 200, response.body
    assert response.content_type == b"application/octet-stream"
    header_length = int(dict(response.headers)[b"inference-header-content-length"])
    header = json.loads(response.body[:header_length])
    assert header["id"] == ""  # the given id, as is
    blob = response.body[header_length:]
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sum(sizes) == len(blob)
    labels = np.frombuffer(blob[: sizes[0]], dtype="<i8")
    proba = np.frombuffer(blob[sizes[0] :], dtype="<f8").reshape(len(rows), 2)
    x = rows.astype("<f4").astype(np.float64)
    assert labels.tolist() == app.model.estimator.predict(x).tolist()
    assert np.allclose(proba, app.model.estimator.predict_proba(x))


def test_binary_input_with_json_output_and_bytes_columns(app: App, rows: np.ndarray) -> None:
    body, length = _binary_request(rows, binary_output=False)
    response = app.handle_now(
        "POST", INFER, body, headers={"inference-header-content-length": str(length)}
    )
    assert response.status == 200
    assert response.content_type == b"application/json"
    data = json.loads(response.body)
    assert (
        data["outputs"][0]["data"]
        == app.model.estimator.predict(rows.astype("<f4").astype(np.float64)).tolist()
    )
    text = b"hello"
    packed = struct.pack("<I", len(text)) + text
    bad = json.dumps(
        {
            "inputs": [
                {
                    "name": app.model.feature_names[0],
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(packed)},
                }
            ]
        }
    ).encode()
    response = app.handle_now(
        "POST", INFER, bad + packed, headers={"Inference-Header-Content-Length": str(len(bad))}
    )
    assert response.status == 422  # a string in a number column, read from BYTES


def _send(
    app: App, header: dict[str, object], blob: bytes, length: int | None = None
) -> tuple[int, str]:
    text = json.dumps(header).encode()
    response = app.handle_now(
        "POST",
        INFER,
        text + blob,
        headers={"Inference-Header-Content-Length": str(length or len(text))},
    )
    return response.status, json.loads(response.body).get("error", "")


def test_broken_binary_requests_are_4xx(app: App, rows: np.ndarray) -> None:
    raw = rows[:1].astype("<f4").tobytes()

    def header(size: int) -> dict[str, object]:
        return {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }

    assert _send(app, header(len(raw)), raw)[0] == 200
    status, error = _send(app, header(len(raw)), raw, length=10_000)
    assert (status, "does not fit" in error) == (400, True)
    status, error = _send(app, header(len(raw) - 1), raw[:-1])
    assert (status, "not a whole number" in error) == (422, True)
    status, error = _send(app, header(len(raw)), raw + b"\x00" * 8)
    assert (status, "belong to none" in error) == (422, True)
    status, error = _send(app, header(len(raw) + 4), raw)
    assert (status, "goes past" in error) == (422, True)
    status, error = _send(app, header(-1), raw)
    assert (status, "byte count" in error) == (422, True)


def test_gzip_and_deflate_bodies(app: App, rows: np.ndarray) -> None:
    plain = json.dumps({"instances": rows.tolist()}).encode()
    expected = app.model.estimator.predict(rows).tolist()
    for encoding, data in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        response = app.handle_now("POST", "/predict", data, headers={"Content-Encoding": encoding})
        assert response.status == 200, response.body
        assert json.loads(response.body)["predictions"] == expected
    assert (
        app.handle_now("POST", "/predict", b"nope", headers={"Content-Encoding": "gzip"}).status
        == 400
    )
    assert (
        app.handle_now("POST", "/predict", plain, headers={"Content-Encoding": "br"}).status == 415
    )
    bomb = gzip.compress(b" " * (app.max_body_bytes + 10))
    response = app.handle_now("POST", "/predict", bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    assert "decoded body" in json.loads(response.body)["error"]


def test_versions_paths_and_ids(app: App, rows: np.ndarray) -> None:
    assert app.handle_now("GET", "/v2/").status == 200
    info = json.loads(app.handle_now("GET", "/v2/").body)
    assert "binary_tensor_data" in info["extensions"]
    assert app.handle_now("GET", "/v2/models/breast-cancer/versions/2.0.1/ready").status == 200
    missing = app.handle_now("GET", "/v2/models/breast-cancer/versions/999/ready")
    assert missing.status == 404
    assert "unknown version '999'" in json.loads(missing.body)["error"]
    assert app.handle_now("GET", "/v2/models/breast%2Dcancer/ready").status == 200
    assert app.handle_now("GET", "/v2/models/breast-cancer/").status == 200
    body = {
        "id": "",
        "inputs": [
            {"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": rows[0].tolist()}
        ],
    }
    for rid in ("", "my id ünïcode", "x" * 500):
        body["id"] = rid
        data = json.loads(app.handle_now("POST", INFER, json.dumps(body).encode()).body)
        assert data["id"] == rid
    del body["id"]
    data = json.loads(app.handle_now("POST", INFER, json.dumps(body).encode(), "r-7").body)
    assert data["id"] == "r-7"  # none given: the request id


# ------------------------------------------------------- what a request declares is checked


def _infer(app: App, body: dict[str, Any], path: str = INFER) -> tuple[int, dict[str, Any]]:
    response = app.handle_now("POST", path, json.dumps(body).encode(), "req-1")
    return response.status, json.loads(response.body)


def _one(datatype: str, data: list[Any], name: str = "input-0") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": [1, len(data)], "datatype": datatype, "data": data}]}


def test_the_declared_datatype_must_fit_the_data(app: App, rows: np.ndarray) -> None:
    values = rows[0].tolist()
    status, data = _infer(app, _one("BYTES", values))
    assert status == 400
    assert data["error"].startswith("inputs[0]: datatype BYTES takes strings, and data[0] is ")
    status, data = _infer(app, _one("INT8", [300] * 30))
    assert (status, data["error"]) == (
        400,
        "inputs[0]: data[0] = 300 does not fit INT8 (-128 to 127)",
    )
    for datatype, bad in (
        ("UINT8", -1),
        ("INT64", 2**63),
        ("UINT64", 2**64),
        ("INT32", 1.5),
        ("INT16", True),
        ("BOOL", 1),
        ("FP32", "1.0"),
        ("FP16", 1e6),
        ("FP32", 1e39),
    ):
        filler = False if datatype == "BOOL" else 0
        status, data = _infer(app, _one(datatype, [filler] * 29 + [bad]))
        assert status == 400, (datatype, bad, data)
        assert data["error"].startswith("inputs[0]: "), data
        assert "data[29]" in data["error"], data
        assert datatype in data["error"], data
    # the valid counterparts: each datatype with values it holds
    ones = app.model.estimator.predict(np.ones((1, 30))).tolist()
    for datatype, value in (("INT8", 1), ("INT8", -128), ("UINT64", 1), ("FP16", 1), ("INT64", 1)):
        status, data = _infer(app, _one(datatype, [value] * 29 + [1]))
        assert status == 200, (datatype, data)
        if value == 1:
            assert data["outputs"][0]["data"] == ones
    status, data = _infer(app, _one("FP32", values))
    assert (status, data["outputs"][0]["data"]) == (
        200,
        app.model.estimator.predict(rows[:1]).tolist(),
    )


def test_an_input_the_model_does_not_have_is_a_400_naming_it(app: App, rows: np.ndarray) -> None:
    status, data = _infer(app, _one("FP64", rows[0].tolist(), name="nope"))
    assert status == 400
    error = data["error"]
    assert error.startswith(
        "input `nope` is not an input of this model: send `input-0` of shape [N, 30]"
    )
    assert "mean radius" in error
    columns = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [rows[0][i]]}
            for i, n in enumerate(app.model.feature_names)
        ]
    }
    columns["inputs"][0]["name"] = "mean radius2"
    status, data = _infer(app, columns)
    assert status == 400
    assert data["error"].startswith("input `mean radius2` is not an input of this model (did you")


def test_id_and_parameters_have_the_protocols_types(app: App, rows: np.ndarray) -> None:
    good = _one("FP64", rows[0].tolist())
    status, data = _infer(app, {**good, "id": 5})
    assert (status, data["error"]) == (400, "`id` must be a string, got int 5")
    status, data = _infer(app, {**good, "id": "abc"})
    assert (status, data["id"]) == (200, "abc")
    status, data = _infer(app, {**good, "id": None})
    assert (status, data["id"]) == (200, "req-1")  # null: no id given
    status, data = _infer(app, {**good, "parameters": [1]})
    assert (status, data["error"]) == (
        400,
        "`parameters` must be an object of name: value, got list [1]",
    )
    tensor = dict(good["inputs"][0])
    status, data = _infer(app, {"inputs": [{**tensor, "parameters": "x"}]})
    assert (status, data["error"].split(" must")[0]) == (400, "inputs[0].parameters")
    status, data = _infer(app, {**good, "outputs": [{"name": "predict", "parameters": [True]}]})
    assert (status, data["error"].split(" must")[0]) == (400, "outputs[0].parameters")
    status, data = _infer(
        app,
        {
            "inputs": [{**tensor, "parameters": {"content_type": "np"}}],
            "parameters": {"content_type": "np"},
            "outputs": [{"name": "predict", "parameters": {}}],
        },
    )
    assert (status, [o["name"] for o in data["outputs"]]) == (200, ["predict"])


@pytest.fixture(scope="module")
def mixed_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[App, dict[str, Any]]:
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
    records = typedrows.records_from_frame(frame, meta["features"])[:4]
    application = App(load(folder), workers=1)
    application.ready = True
    return application, typedrows.v2_columns(records, meta["features"])


def test_per_column_inputs_are_checked_against_their_datatype(
    mixed_app: tuple[App, dict[str, Any]],
) -> None:
    app, body = mixed_app
    path = "/v2/models/mixed/infer"
    status, data = _infer(app, body, path)
    assert status == 200, data  # BYTES strings in the category and text columns
    by_name = {i["name"]: i for i in body["inputs"]}
    assert (by_name["plan"]["datatype"], by_name["note"]["datatype"]) == ("BYTES", "BYTES")

    def changed(column: str, **fields: Any) -> dict[str, Any]:
        inputs = [{**i, **fields} if i["name"] == column else i for i in body["inputs"]]
        return {**body, "inputs": inputs}

    index = {name: i for i, name in enumerate(by_name)}
    small = [v if v is None else v % 100 for v in by_name["visits"]["data"]]
    status, data = _infer(app, changed("visits", datatype="INT8", data=small), path)
    assert status == 200, data
    for name, fields, what in (
        ("plan", {"datatype": "FP64"}, "takes numbers, and data[0] is text"),
        ("visits", {"datatype": "INT8", "data": [300] * 4}, "does not fit INT8"),
        ("active", {"datatype": "INT64"}, "takes integers, and data[0] is "),
        ("age", {"datatype": "BYTES"}, "takes strings"),
    ):
        status, data = _infer(app, changed(name, **fields), path)
        assert status == 400, (name, data)
        assert data["error"].startswith(f"inputs[{index[name]}]: "), data
        assert what in data["error"], data
    status, data = _infer(app, changed("note", name="nope"), path)
    assert status == 400
    assert "input `nope` is not an input of this model" in data["error"]
    assert "age, visits, plan, region, note" in data["error"]

"""Open Inference Protocol details: binary data extension, gzip, versions, paths, ids."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from mlcd.serve.app import App
from mlcd.serve.model import load
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

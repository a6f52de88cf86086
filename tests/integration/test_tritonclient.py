"""Real Open Inference Protocol clients against the real server: tritonclient's HTTP client
with its default wire format (binary tensors, binary outputs) and with JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from mlcd import cli, typedrows
from mlcd.serve.model import load
from tests.integration.test_serve_http import Server
from tests.support.mixed import write_project
from tests.support.models import make_model_dir


def column_tensors(frame: Any, features: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
    """(name, NumPy array, v2 datatype) per column, as an OIP client sends a DataFrame
    model's columns (MLServer's pandas-codec layout: strings as BYTES)."""
    out = []
    for feature in features:
        name, kind = feature["name"], feature["kind"]
        values = frame[name]
        if kind == "number":
            out.append((name, values.to_numpy(np.float64), "FP64"))
        elif kind == "integer":
            out.append((name, values.to_numpy(np.int64), "INT64"))
        elif kind == "boolean":
            out.append((name, values.to_numpy(bool), "BOOL"))
        else:
            encoded = np.asarray([v.encode() for v in values], dtype=object)
            out.append((name, encoded, "BYTES"))
    return out


@pytest.fixture(scope="module")
def numeric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    folder = make_model_dir(tmp_path_factory.mktemp("triton"), "logreg")
    server = Server(folder)
    yield server, folder
    assert server.stop() == 0


@pytest.fixture(scope="module")
def mixed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("tritonmixed")
    config = write_project(root, project="mixed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUB_SHA", "d" * 40)
        patch.delenv("MLCD_REGISTRY_PATH", raising=False)
        assert cli.main(["train", "--config", str(config), "--out", str(root / ".mlcd")]) == 0
    folder = root / ".mlcd" / "train"
    server = Server(folder)
    yield server, folder
    assert server.stop() == 0


def _rows(folder: Path) -> np.ndarray:
    lines = (folder / "holdout.csv").read_text().splitlines()[1:]
    return np.asarray([[float(v) for v in line.split(",")[:-1]] for line in lines])


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infers_the_in_process_predictions(
    numeric: tuple[Server, Path], *, binary: bool
) -> None:
    server, folder = numeric
    model = load(folder)
    rows = _rows(folder)[:20]
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("breast-cancer", model_version="7.0.0")
    assert not client.is_model_ready("breast-cancer", model_version="999")
    meta = client.get_model_metadata("breast-cancer")
    assert meta["inputs"][0]["shape"] == [-1, 30]
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = None
    if not binary:
        outputs = [
            httpclient.InferRequestedOutput("predict", binary_data=False),
            httpclient.InferRequestedOutput("predict_proba", binary_data=False),
        ]
    result = client.infer("breast-cancer", [tensor], outputs=outputs, request_id="tc-1")
    assert result.as_numpy("predict").tolist() == model.estimator.predict(rows).tolist()
    assert np.allclose(result.as_numpy("predict_proba"), model.estimator.predict_proba(rows))
    response = result.get_response()
    assert response["id"] == "tc-1"  # (tritonclient leaves an empty id out)
    assert response["model_version"] == "7.0.0"
    squeezed = client.infer(
        "breast-cancer", [tensor], outputs=outputs, request_compression_algorithm="gzip"
    )
    assert squeezed.as_numpy("predict").tolist() == result.as_numpy("predict").tolist()
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_sends_one_column_each_with_strings_as_bytes(
    mixed: tuple[Server, Path], *, binary: bool
) -> None:
    server, folder = mixed
    model = load(folder)
    meta = json.loads((folder / "model.json").read_text())
    frame = typedrows.holdout_frame(folder / "holdout.csv", meta["features"], "label")
    frame = frame[frame.notna().all(axis=1)].head(15)  # a tensor cannot hold a gap
    expected = model.estimator.predict(frame[model.feature_names]).tolist()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    inputs: list[Any] = []
    for name, array, datatype in column_tensors(frame, meta["features"]):
        tensor = httpclient.InferInput(name, [len(frame)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    result = client.infer("mixed", inputs, request_id="mixed-1")
    labels = [v.decode() for v in result.as_numpy("predict").tolist()]
    assert labels == expected
    assert result.get_response()["id"] == "mixed-1"
    client.close()

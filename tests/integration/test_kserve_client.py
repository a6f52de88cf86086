"""The real `kserve` package's Open Inference Protocol REST client against the real server.

kserve 0.21's `InferenceRESTClient` (httpx, async) speaks v1 unless told `protocol="v2"`.
`InferInput.set_data_from_numpy` defaults to `binary_data=True`: the tensor goes after the
JSON header (binary data extension, `Inference-Header-Content-Length`, content type
`application/octet-stream`); with `binary_data=False`, or with the array given as
`InferInput(data=...)`, the request is plain JSON. Outputs come back as JSON unless the
request asks for binary ones (`binary_data_output`, or `binary_data` on one output), which
the client reads with the response's `Inference-Header-Content-Length`. Every path is sent
here and compared with the in-process predictions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

from mlcd import typedrows
from mlcd.serve.model import load
from tests.integration.test_serve_http import Server
from tests.integration.test_tritonclient import _rows, column_tensors, mixed, numeric

pytestmark = pytest.mark.integration

__all__ = ["mixed", "numeric"]  # the module fixtures of test_tritonclient, served here too

Outputs = dict[str, np.ndarray]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _infer(
    port: int,
    model: str,
    inputs: list[InferInput],
    *,
    request_id: str,
    parameters: dict[str, Any] | None = None,
    outputs: list[RequestedOutput] | None = None,
) -> tuple[Any, dict[str, str]]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    base = f"http://127.0.0.1:{port}"
    try:
        assert await client.is_server_live(base)
        assert await client.is_server_ready(base)
        assert await client.is_model_ready(base, model)
        assert not await client.is_model_ready(base, "no-such-model")
        request = InferRequest(
            model, inputs, request_id=request_id, parameters=parameters, request_outputs=outputs
        )
        headers: dict[str, str] = {}
        result = await client.infer(base, request, model_name=model, response_headers=headers)
    finally:
        await client.close()
    return result, headers


def _by_name(result: Any) -> Outputs:
    return {output.name: output.as_numpy() for output in result.outputs}


@pytest.mark.parametrize(
    ("wire", "replies"),
    [
        ("binary", "json"),  # the client's default: binary tensors in, JSON out
        ("binary", "binary"),  # binary_data_output: both ways binary
        ("json", "json"),  # set_data_from_numpy(binary_data=False)
        ("ndarray", "one-binary"),  # InferInput(data=array): JSON in; predict_proba binary
    ],
)
def test_kserve_client_infers_the_in_process_predictions(
    numeric: tuple[Server, Path], wire: str, replies: str
) -> None:
    server, folder = numeric
    model = load(folder)
    rows = _rows(folder)[:20]
    if wire == "ndarray":
        tensor = InferInput("input-0", list(rows.shape), "FP64", data=rows)
    else:
        tensor = InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=wire == "binary")
    parameters = {"binary_data_output": True} if replies == "binary" else None
    outputs = None
    if replies == "one-binary":
        outputs = [
            RequestedOutput("predict"),
            RequestedOutput("predict_proba", parameters={"binary_data": True}),
        ]
    result, headers = _run(
        _infer(
            server.port,
            "breast-cancer",
            [tensor],
            request_id=f"ks-{wire}-{replies}",
            parameters=parameters,
            outputs=outputs,
        )
    )
    found = _by_name(result)
    assert found["predict"].tolist() == model.estimator.predict(rows).tolist()
    assert np.allclose(found["predict_proba"], model.estimator.predict_proba(rows))
    assert found["predict_proba"].shape == (20, 2)
    assert result.id == f"ks-{wire}-{replies}"
    assert result.model_name == "breast-cancer"
    binary_out = replies != "json"
    assert ("inference-header-content-length" in headers) is binary_out
    if outputs is not None:
        assert [o.name for o in result.outputs] == ["predict", "predict_proba"]


def test_kserve_client_sends_one_column_each_with_strings_as_bytes(
    mixed: tuple[Server, Path],
) -> None:
    server, folder = mixed
    model = load(folder)
    meta = json.loads((folder / "model.json").read_text())
    frame = typedrows.holdout_frame(folder / "holdout.csv", meta["features"], "label")
    frame = frame[frame.notna().all(axis=1)].head(15)  # a tensor cannot hold a gap
    expected = model.estimator.predict(frame[model.feature_names]).tolist()
    for binary in (True, False):
        inputs: list[InferInput] = []
        for name, array, datatype in column_tensors(frame, meta["features"]):
            tensor = InferInput(name, [len(frame)], datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        result, _ = _run(_infer(server.port, "mixed", inputs, request_id=f"mixed-{binary}"))
        labels = [v.decode() if isinstance(v, bytes) else v for v in _by_name(result)["predict"]]
        assert labels == expected, binary
        assert result.id == f"mixed-{binary}"


def test_kserve_client_gets_the_servers_error_text(numeric: tuple[Server, Path]) -> None:
    """A wrong shape is a 422 whose `error` text the client puts in its exception."""
    server, folder = numeric
    rows = _rows(folder)[:3, :5]  # 5 columns, the model takes 30
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        _run(_infer(server.port, "breast-cancer", [tensor], request_id="bad"))
    assert caught.value.response.status_code == 422
    assert "has 5 columns" in str(caught.value), str(caught.value)
    assert "the model takes 30 features" in str(caught.value)

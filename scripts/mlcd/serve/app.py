"""Routes of the model server, apart from sockets: request in, response out.

`App.handle` answers every route at once except the two prediction routes, for which it
returns a `PredictJob` that the server batches with others (`server.Batcher`) and
finishes with `App.finish`. `App.handle_now` does both in one call (tests, tools).
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from mlcd import __version__
from mlcd.serve.metrics import SCORE_BUCKETS_PROBA as PROBA_BUCKETS
from mlcd.serve.metrics import Layout, Metrics, RecentBuffer, regression_buckets
from mlcd.serve.model import BatchOutput, ModelError, ServedModel
from mlcd.serve.schema import (
    V2_TENSOR,
    ClientError,
    Parsed,
    parse_mlflow,
    parse_predict,
    parse_v2,
)

# typedrows imports only the standard library at import time, so the serving image (no pandas,
# no pydantic) can use its table of V2 datatypes, the one the rows sent by mlcd use too
from mlcd.typedrows import V2_DATATYPE

JSON = b"application/json"
# numeric query parameters, parsed strictly: int()/float() would take " 5", "1_0", "nan", "inf"
_COUNT = re.compile(r"[0-9]{1,9}")
_NUMBER = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")
TEXT = b"text/plain; version=0.0.4; charset=utf-8"
PLAIN = b"text/plain; charset=utf-8"
CSV = b"text/csv; charset=utf-8"

R_PREDICT = "/predict"
R_V2_INFER = "/v2/models/{name}/infer"
R_V2_MODEL = "/v2/models/{name}"
R_V2_MODEL_READY = "/v2/models/{name}/ready"
R_INVOCATIONS = "/invocations"  # MLflow's scoring protocol and SageMaker's container contract
PREDICTION_ROUTES = (R_PREDICT, R_V2_INFER, R_INVOCATIONS)
ROUTES: tuple[str, ...] = (
    R_PREDICT,
    R_INVOCATIONS,
    R_V2_INFER,
    R_V2_MODEL,
    R_V2_MODEL_READY,
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/metadata",
    "/v1/recent-predictions",
    "/ping",
    "/health",
    "/version",
    "other",
)
_GET_ROUTES = {
    "/v2": "/v2",
    "/v2/health/live": "/v2/health/live",
    "/v2/health/ready": "/v2/health/ready",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/v1/metadata": "/v1/metadata",
    "/v1/recent-predictions": "/v1/recent-predictions",
    "/ping": "/ping",
    "/health": "/health",
    "/version": "/version",
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    route: str = "other"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class PredictJob:
    """A validated prediction request waiting for its batch."""

    route: str
    parsed: Parsed
    request_id: str
    started: float
    output: BatchOutput | None = None
    error: str | None = None
    csv: bool = False  # /invocations with `Accept: text/csv`: one prediction a line


def json_body(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).encode()


def error_response(status: int, message: str, route: str = "other") -> Response:
    return Response(status, json_body({"error": message}), JSON, route)


def mlflow_error(status: int, message: str, route: str = R_INVOCATIONS) -> Response:
    """An error of /invocations as MLflow's scoring server sends it: a 415 in plain text,
    anything else `{"error_code": …, "message": …}` (BAD_REQUEST for the client's mistakes)."""
    if status == 415:
        return Response(415, message.encode(), PLAIN, route)
    if status == 422:  # MLflow answers 400 for every input it cannot take
        status = 400
    code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
    return Response(status, json_body({"error_code": code, "message": message}), JSON, route)


def wants_csv(accept: str) -> bool:
    """Whether an `Accept` header asks for CSV (SageMaker sends text/csv or application/json);
    JSON for no header or any JSON-compatible type, 406 for one that fits neither."""
    if not accept.strip():
        return False
    for item in accept.split(","):
        mime = item.split(";")[0].strip().lower()
        if mime in ("application/json", "application/*", "*/*", "*"):
            return False
        if mime in ("text/csv", "text/*"):
            return True
    raise ClientError(
        406, f"Accept {accept[:80]!r}: this server answers application/json or text/csv"
    )


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """A request body sent with `Content-Encoding` (gzip or deflate), at most `limit` bytes
    once decoded; anything else is a 4xx."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "x-gzip", "deflate"):
        raise ClientError(
            415, f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate)"
        )
    decoder = zlib.decompressobj(wbits=31 if "gzip" in name else 15)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ClientError(400, f"the body is not valid {name} data ({exc})") from exc
    if len(data) > limit or decoder.unconsumed_tail:
        raise ClientError(413, f"the decoded body is over the limit of {limit} bytes")
    if not decoder.eof:
        raise ClientError(400, f"the {name} body is cut short")
    return data


def encode_binary(data: list[Any], datatype: str) -> bytes:
    """One output tensor in the binary data extension's layout (little-endian)."""
    import numpy as np

    if datatype == "BYTES":
        parts = []
        for value in data:
            raw = str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    dtype = {"FP64": "<f8", "INT64": "<i8", "UINT64": "<u8", "BOOL": "<u1"}[datatype]
    return np.asarray(data, dtype=dtype).tobytes()


class App:
    """The routes, the model and the shared metrics of one worker."""

    def __init__(
        self,
        model: ServedModel,
        *,
        workers: int = 1,
        recent_capacity: int = 10_000,
        max_body_bytes: int = 1 << 20,
    ) -> None:
        self.model = model
        self.max_body_bytes = max_body_bytes
        if model.task == "classification":
            buckets: tuple[float, ...] = PROBA_BUCKETS
        else:
            target = model.meta.get("target_range") or {}
            buckets = regression_buckets(target.get("min"), target.get("max"))
        self.layout = Layout(
            ROUTES,
            model.classes,
            buckets,
            [model.features[i].name for i in model.category_features],
        )
        self._unknown_position = {col: i for i, col in enumerate(model.category_features)}
        self.metrics = Metrics(self.layout, workers, name=model.name, version=model.version)
        self.recent = RecentBuffer(recent_capacity, workers)
        self.ready = False
        self.draining = False
        self._card = json_body(model.card())
        self._v2_meta = json_body(self._v2_model_metadata())
        self._proba_outputs = model.has_proba

    def bind(self, worker: int) -> None:
        self.metrics.bind(worker)
        self.recent.bind(worker)

    # ----------------------------------------------------------------- routing

    def handle(
        self,
        method: str,
        target: str,
        body: bytes,
        request_id: str,
        started: float,
        *,
        content_encoding: str = "",
        header_length: int | None = None,
        content_type: str = "",
        accept: str = "",
    ) -> Response | PredictJob:
        path, _, query = target.partition("?")
        if path.startswith("/v2") and len(path) > 3 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # GET /v2/ is GET /v2
        if content_encoding and method == "POST":
            try:
                body = decode_body(body, content_encoding, self.max_body_bytes)
            except ClientError as exc:
                where = R_PREDICT if path == R_PREDICT else "other"
                if path.startswith("/v2/models/") and path.endswith("/infer"):
                    where = R_V2_INFER
                if path == R_INVOCATIONS:
                    return mlflow_error(exc.status, exc.message)
                return error_response(exc.status, exc.message, where)
        if path == R_PREDICT:
            if method != "POST":
                return self._not_allowed(R_PREDICT, "POST")
            try:
                parsed = parse_predict(self.model, body)
            except ClientError as exc:
                return error_response(exc.status, exc.message, R_PREDICT)
            if parsed.unknown:
                self._count_unknown(parsed.unknown)
            return PredictJob(R_PREDICT, parsed, request_id, started)
        if path == R_INVOCATIONS:
            return self._invocations(method, body, request_id, started, content_type, accept)
        if path.startswith("/v2/models/"):
            return self._v2_model_route(
                method, path, body, request_id, started, header_length=header_length
            )
        route = _GET_ROUTES.get(path)
        if route is None:
            return error_response(404, f"no route {path[:100]!r}; see GET /v1/metadata", "other")
        if method not in ("GET", "HEAD"):
            return self._not_allowed(route, "GET")
        return self._get(route, query)

    def _invocations(  # noqa: PLR0917 - the request's parts, as `handle` has them
        self,
        method: str,
        body: bytes,
        request_id: str,
        started: float,
        content_type: str,
        accept: str,
    ) -> Response | PredictJob:
        """MLflow's `POST /invocations`: the same rows, checks and batches as /predict."""
        if method != "POST":
            response = mlflow_error(405, f"{R_INVOCATIONS} takes POST")
            response.headers.append((b"allow", b"POST"))
            return response
        try:
            csv = wants_csv(accept)
            parsed = parse_mlflow(self.model, body, content_type)
        except ClientError as exc:
            return mlflow_error(exc.status, exc.message)
        if parsed.unknown:
            self._count_unknown(parsed.unknown)
        return PredictJob(R_INVOCATIONS, parsed, request_id, started, csv=csv)

    def _count_unknown(self, unknown: dict[int, int]) -> None:
        for col, count in unknown.items():
            self.metrics.observe_unknown(self._unknown_position[col], count)

    def _not_allowed(self, route: str, allowed: str) -> Response:
        response = error_response(405, f"{route} takes {allowed}", route)
        response.headers.append((b"allow", allowed.encode()))
        return response

    def _get(self, route: str, query: str) -> Response:
        if route in ("/healthz", "/v2/health/live"):
            body = b'{"status":"ok"}' if route == "/healthz" else b'{"live":true}'
            return Response(200, body, JSON, route)
        if route in ("/readyz", "/v2/health/ready"):
            ok = self.ready and not self.draining
            state = "ready" if ok else ("draining" if self.draining else "loading")
            state_data: dict[str, Any] = {"status": state} if route == "/readyz" else {"ready": ok}
            return Response(200 if ok else 503, json_body(state_data), JSON, route)
        if route == "/metrics":
            return Response(200, self.metrics.render().encode(), TEXT, route)
        if route == "/v1/metadata":
            return Response(200, self._card, JSON, route)
        if route in ("/ping", "/health"):  # MLflow's and SageMaker's health check
            ok = self.ready and not self.draining
            return Response(200 if ok else 503, b"\n", JSON, route)
        if route == "/version":
            return Response(200, __version__.encode(), PLAIN, route)
        if route == "/v2":
            info = {"name": "mlcd", "version": __version__, "extensions": ["binary_tensor_data"]}
            return Response(200, json_body(info), JSON, route)
        return self._recent(query)

    def _recent(self, query: str) -> Response:
        route = "/v1/recent-predictions"
        params = parse_qs(query, keep_blank_values=True)
        limit_raw = params.get("limit", ["100"])[-1]
        since_raw = params.get("since", [""])[-1]
        if not _COUNT.fullmatch(limit_raw):
            return error_response(
                400, f"limit={limit_raw[:40]!r} must be a whole number (0 or more)", route
            )
        if since_raw and not _NUMBER.fullmatch(since_raw):
            return error_response(
                400,
                f"since={since_raw[:40]!r} must be a number of seconds since the epoch "
                "(digits, an optional fraction; not nan or inf)",
                route,
            )
        limit = int(limit_raw)
        since = float(since_raw) if since_raw else None
        limit = min(limit, self.recent.capacity * self.recent.workers)
        records = self.recent.recent(limit, since)
        return Response(200, json_body({"predictions": records}), JSON, route)

    def _v2_model_route(
        self,
        method: str,
        path: str,
        body: bytes,
        request_id: str,
        started: float,
        *,
        header_length: int | None = None,
    ) -> Response | PredictJob:
        parts = [unquote(p) for p in path[len("/v2/models/") :].split("/")]
        name = parts[0]
        rest = parts[1:]
        version: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":  # /versions/{v}/…
            version = rest[1]
            rest = rest[2:]
        route = {(): R_V2_MODEL, ("ready",): R_V2_MODEL_READY, ("infer",): R_V2_INFER}.get(
            tuple(rest)
        )
        if route is None:
            return error_response(404, f"no route {path[:100]!r}", "other")
        if name != self.model.name:
            return error_response(
                404, f"unknown model {name[:100]!r}; this server serves {self.model.name!r}", route
            )
        if version is not None and version != self.model.version:
            return error_response(
                404,
                f"unknown version {version[:100]!r} of {name!r}; this server serves "
                f"{self.model.version!r}",
                route,
            )
        if route == R_V2_INFER:
            if method != "POST":
                return self._not_allowed(route, "POST")
            try:
                parsed = parse_v2(self.model, body, header_length)
            except ClientError as exc:
                return error_response(exc.status, exc.message, route)
            if parsed.unknown:
                self._count_unknown(parsed.unknown)
            return PredictJob(route, parsed, request_id, started)
        if method not in ("GET", "HEAD"):
            return self._not_allowed(route, "GET")
        if route == R_V2_MODEL_READY:
            ok = self.ready and not self.draining
            return Response(200 if ok else 503, json_body({"name": name, "ready": ok}), JSON, route)
        return Response(200, self._v2_meta, JSON, route)

    def _v2_model_metadata(self) -> dict[str, Any]:
        m = self.model
        outputs = [{"name": "predict", "datatype": self._label_datatype(), "shape": [-1]}]
        if m.has_proba:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.classes)]}
            )
        if m.input_format == "array":
            inputs: list[dict[str, Any]] = [
                {
                    "name": V2_TENSOR,
                    "datatype": "FP64",
                    "shape": [-1, m.n_features],
                    "parameters": {"features": m.feature_names},
                }
            ]
        else:  # one input per column, as MLServer's pandas codec (content type "pd") has it
            inputs = [
                {"name": f.name, "datatype": V2_DATATYPE[f.kind], "shape": [-1]} for f in m.features
            ]
        return {
            "name": m.name,
            "versions": [m.version],
            "platform": "sklearn",
            "inputs": inputs,
            "outputs": outputs,
        }

    def _label_datatype(self) -> str:
        kind = self.model.classes_array.dtype.kind if self.model.task == "classification" else "f"
        return {"i": "INT64", "u": "UINT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")

    # ------------------------------------------------------------- predictions

    def finish(self, job: PredictJob) -> Response:
        """The response of a job whose batch has run (or failed)."""
        latency = time.perf_counter() - job.started
        if job.output is None:
            message = f"the model failed: {job.error}"
            response = (
                mlflow_error(500, message)
                if job.route == R_INVOCATIONS
                else error_response(500, message, job.route)
            )
            self._remember(job, response.status, None, latency)
            return response
        out = job.output
        extra: list[tuple[bytes, bytes]] = []
        content_type = JSON
        try:
            if job.parsed.kind == "v2":
                body, header_length = self._v2_body(job, out)
                if header_length is not None:
                    content_type = b"application/octet-stream"
                    extra.append((b"inference-header-content-length", b"%d" % header_length))
            elif job.parsed.kind == "mlflow":  # MLflow's shape: the predictions alone
                if job.csv:
                    content_type = CSV
                    body = "".join(f"{_csv_cell(p)}\n" for p in out.predictions).encode()
                else:
                    body = json_body({"predictions": out.predictions})
            else:
                data: dict[str, Any] = {"predictions": out.predictions}
                if out.probabilities is not None:
                    data["probabilities"] = out.probabilities
                data["model_version"] = self.model.version
                body = json_body(data)
        except ValueError:  # NaN or infinity out of the model: its fault, not the client's
            job.error = "the model returned a value that is not a finite number"
            job.output = None
            return self.finish(job)
        self.metrics.observe_predictions(out.labels, out.scores)
        self._remember(job, 200, out.predictions, latency)
        return Response(200, body, content_type, job.route, extra)

    def _v2_body(self, job: PredictJob, out: BatchOutput) -> tuple[bytes, int | None]:
        """The infer response; binary outputs go after the JSON (binary data extension),
        and then the JSON's length is returned too (Inference-Header-Content-Length)."""
        n = len(out.predictions)
        wanted = job.parsed.v2_outputs
        binary_names = job.parsed.v2_binary
        outputs: list[dict[str, Any]] = []
        blobs: list[bytes] = []

        def add(name: str, shape: list[int], datatype: str, data: list[Any]) -> None:
            output: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
            if name in binary_names:
                blob = encode_binary(data, datatype)
                output["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                output["data"] = data
            outputs.append(output)

        if wanted is None or "predict" in wanted:
            add("predict", [n], self._label_datatype(), out.predictions)
        if out.probabilities is not None and (wanted is None or "predict_proba" in wanted):
            flat = [p for row in out.probabilities for p in row]
            add("predict_proba", [n, len(self.model.classes)], "FP64", flat)
        rid = job.parsed.v2_id
        header = json_body(
            {
                "model_name": self.model.name,
                "model_version": self.model.version,
                "id": rid if rid is not None else job.request_id,
                "outputs": outputs,
            }
        )
        if not blobs:
            return header, None
        return header + b"".join(blobs), len(header)

    def _remember(
        self, job: PredictJob, status: int, predictions: list[Any] | None, latency: float
    ) -> None:
        self.recent.add(
            {
                "request_id": job.request_id,
                "predictions": predictions,
                "status": status,
                "latency_ms": round(latency * 1000, 3),
                "time": time.time(),
                "route": job.route,
            }
        )

    def remember_error(self, route: str, request_id: str, status: int, started: float) -> None:
        """Client errors on prediction routes are kept too (the judge counts them)."""
        if route in PREDICTION_ROUTES:
            latency = time.perf_counter() - started
            self.recent.add(
                {
                    "request_id": request_id,
                    "predictions": None,
                    "status": status,
                    "latency_ms": round(latency * 1000, 3),
                    "time": time.time(),
                    "route": route,
                }
            )

    def run_batch(self, jobs: list[PredictJob]) -> None:
        """Predict the rows of several jobs in one call; on failure, each job alone."""
        import numpy as np

        if len(jobs) == 1:
            self._run_one(jobs[0])
            return
        rows = np.concatenate([j.parsed.rows for j in jobs], axis=0)
        try:
            out = self.model.predict(rows)
        except ModelError:
            for job in jobs:
                self._run_one(job)
            return
        start = 0
        for job in jobs:
            n = len(job.parsed.rows)
            end = start + n
            job.output = BatchOutput(
                predictions=out.predictions[start:end],
                probabilities=None if out.probabilities is None else out.probabilities[start:end],
                scores=out.scores[start:end],
                labels=out.labels[start:end],
            )
            start = end

    def _run_one(self, job: PredictJob) -> None:
        try:
            job.output = self.model.predict(job.parsed.rows)
        except ModelError as exc:
            job.error = str(exc)[:500]

    def handle_now(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        request_id: str = "test",
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Answer any request in one call, predicting inline (no batching)."""
        started = time.perf_counter()
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        length = lower.get("inference-header-content-length")
        result = self.handle(
            method,
            target,
            body,
            request_id,
            started,
            content_encoding=lower.get("content-encoding", ""),
            header_length=int(length) if length is not None else None,
            content_type=lower.get("content-type", ""),
            accept=lower.get("accept", ""),
        )
        if isinstance(result, PredictJob):
            self.run_batch([result])
            result = self.finish(result)
        elif result.status >= 400:
            self.remember_error(result.route, request_id, result.status, started)
        self.metrics.observe_request(result.route, result.status, time.perf_counter() - started)
        return result


def _csv_cell(value: Any) -> str:
    """One prediction as a CSV line's value (a label with a comma or quote is quoted)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return repr(value)
    text = str(value)
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text

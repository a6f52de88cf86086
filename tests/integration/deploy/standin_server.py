"""A stand-in model server that speaks `mlcd serve`'s contract, with controlled misbehaviour.

Used by the deploy integration tests to build small images (FROM local/python:3.11-bookworm,
stdlib only) whose behaviour is known: a share of requests answered 500, added latency, or
predictions flipped. Settings come from environment variables baked into the image:
STANDIN_FAIL_RATE, STANDIN_DELAY_MS, STANDIN_FLIP_RATE, STANDIN_SEED.
The contract it follows: POST /predict, GET /metrics (Prometheus text), GET
/v1/recent-predictions?limit=N, /healthz, /readyz; every response carries X-Request-ID.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

FAIL_RATE = float(os.environ.get("STANDIN_FAIL_RATE", "0"))
DELAY_MS = float(os.environ.get("STANDIN_DELAY_MS", "0"))
FLIP_RATE = float(os.environ.get("STANDIN_FLIP_RATE", "0"))
VERSION = os.environ.get("MLCD_MODEL_VERSION", "unknown")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

_lock = threading.Lock()
_rng = random.Random(int(os.environ.get("STANDIN_SEED", "7")))
_requests: dict[tuple[str, str], int] = {}
_latency: dict[str, list[float]] = {}  # route → [count per bucket..., +Inf count, sum]
_classes: dict[str, int] = {}
_scores = [0] * (len(SCORE_BUCKETS) + 1)
_score_sum = 0.0
_recent: deque[dict[str, object]] = deque(maxlen=2000)


def _predict(record: dict[str, float]) -> tuple[int, float]:
    values = [float(v) for v in record.values()]
    score = 1.0 / (1.0 + pow(2.718281828, -(values[0] - 14.0))) if values else 0.5
    label = 1 if score >= 0.5 else 0
    return label, score


def _observe(route: str, status: int, seconds: float) -> None:
    with _lock:
        key = (route, str(status))
        _requests[key] = _requests.get(key, 0) + 1
        row = _latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                row[index] += 1
        row[-2] += 1
        row[-1] += seconds


def _metrics() -> str:
    lines = ["# TYPE mlcd_requests_total counter"]
    with _lock:
        for (route, status), count in sorted(_requests.items()):
            lines.append(f'mlcd_requests_total{{route="{route}",status="{status}"}} {count}')
        lines.append("# TYPE mlcd_request_duration_seconds histogram")
        for route, row in sorted(_latency.items()):
            for bound, n in zip(BUCKETS, row, strict=False):
                lines.append(
                    f'mlcd_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {n:g}'
                )
            count, total = row[-2], row[-1]
            lines.append(
                f'mlcd_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {count:g}'
            )
            lines.append(f'mlcd_request_duration_seconds_sum{{route="{route}"}} {total}')
            lines.append(f'mlcd_request_duration_seconds_count{{route="{route}"}} {count:g}')
        for label, count in sorted(_classes.items()):
            lines.append(f'mlcd_predictions_total{{class="{label}"}} {count}')
        cumulative = 0
        for bound, count in zip(SCORE_BUCKETS, _scores, strict=False):
            cumulative += count
            lines.append(f'mlcd_prediction_score_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'mlcd_prediction_score_bucket{{le="+Inf"}} {sum(_scores)}')
        lines.append(f"mlcd_prediction_score_sum {_score_sum}")
        lines.append(f"mlcd_prediction_score_count {sum(_scores)}")
    lines.append(f'mlcd_model_info{{name="standin",version="{VERSION}"}} 1')
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes

    def log_message(self, *_args: object) -> None:
        return None

    def _send(
        self, status: int, body: bytes, request_id: str, content_type: str = "application/json"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", request_id)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        request_id = self.headers.get("X-Request-ID") or uuid.uuid4().hex
        url = urlparse(self.path)
        if url.path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
            self._send(200, b'{"status": "ok"}', request_id)
        elif url.path == "/metrics":
            self._send(200, _metrics().encode(), request_id, "text/plain; version=0.0.4")
        elif url.path == "/v1/recent-predictions":
            limit = int(parse_qs(url.query).get("limit", ["100"])[0])
            with _lock:
                items = list(_recent)[-limit:]
            self._send(200, json.dumps({"predictions": items}).encode(), request_id)
        else:
            self._send(404, b'{"error": "not found"}', request_id)

    def do_POST(self) -> None:
        start = time.perf_counter()
        request_id = self.headers.get("X-Request-ID") or uuid.uuid4().hex
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        route = urlparse(self.path).path
        if route != "/predict":
            self._send(404, b'{"error": "not found"}', request_id)
            return
        try:
            body = json.loads(raw)
            records = body["records"]
        except (ValueError, KeyError, TypeError):
            self._send(400, b'{"error": "expected {\\"records\\": [...]}"}', request_id)
            _observe(route, 400, time.perf_counter() - start)
            return
        if DELAY_MS:
            time.sleep(DELAY_MS / 1000.0)
        with _lock:
            fail = _rng.random() < FAIL_RATE
            flips = [_rng.random() < FLIP_RATE for _ in records]
        if fail:
            status, payload, preds = 500, {"error": "model failed"}, []
        else:
            preds, scores = [], []
            for record, flip in zip(records, flips, strict=True):
                label, score = _predict(record)
                if flip:
                    label, score = 1 - label, 1.0 - score
                preds.append(label)
                scores.append(score)
            status = 200
            payload = {"predictions": preds, "probabilities": scores, "model_version": VERSION}
            global _score_sum  # noqa: PLW0603 - a tiny server's counters
            with _lock:
                for label, score in zip(preds, scores, strict=True):
                    _classes[str(label)] = _classes.get(str(label), 0) + 1
                    index = next(
                        (i for i, b in enumerate(SCORE_BUCKETS) if score <= b), len(SCORE_BUCKETS)
                    )
                    _scores[index] += 1
                    _score_sum += score
        elapsed = time.perf_counter() - start
        _observe(route, status, elapsed)
        with _lock:
            _recent.append(
                {
                    "request_id": request_id,
                    "predictions": preds,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                    "time": datetime.now(UTC).isoformat(),
                }
            )
        self._send(status, json.dumps(payload).encode(), request_id)


def main() -> None:
    port = int(os.environ.get("MLCD_PORT", "8080"))
    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 drops bursts
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

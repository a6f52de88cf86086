"""Small helpers shared by the deploy integration tests (traffic to 127.0.0.1 only)."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Callable

ROW = {"mean radius": 15.0, "mean texture": 20.0}


def post(port: int, body: bytes, request_id: str | None = None) -> tuple[int, bytes, float]:
    """POST /predict; (status, body, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-ID"] = request_id
    start = time.perf_counter()
    try:
        conn.request("POST", "/predict", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - start
    finally:
        conn.close()


def hammer(port: int, n: int) -> Counter[int]:
    """n sequential requests; how many got each status (0 for a connection error)."""
    seen: Counter[int] = Counter()
    body = json.dumps({"records": [ROW]}).encode()
    for _ in range(n):
        try:
            status, _, _ = post(port, body)
        except OSError:
            status = 0
        seen[status] += 1
    return seen


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

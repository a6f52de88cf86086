"""The model server over real HTTP: two worker processes, bad input, metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcd.serve.client import Client
from tests.support.models import make_model_dir


class Server:
    def __init__(self, model_dir: Path, **env: str) -> None:
        full = {
            **os.environ,
            "MLCD_MODEL_DIR": str(model_dir),
            "MLCD_PORT": "0",
            "MLCD_WORKERS": "2",
            "MLCD_MODEL_VERSION": "7.0.0",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlcd.serve"],
            env=full,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.log: list[str] = []
        deadline = time.monotonic() + 60
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if '"listening"' in line:
                self.port = json.loads(line)["port"]
                break
        assert self.port, "".join(self.log)
        threading.Thread(target=self._drain, daemon=True).start()
        client = Client("127.0.0.1", self.port)
        while time.monotonic() < deadline:
            try:
                # both workers: ready answers come from either; ask a few times
                if all(client.get("/readyz").status == 200 for _ in range(4)):
                    break
            except OSError:
                client.close()
            time.sleep(0.1)
        client.close()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def client(self) -> Client:
        return Client("127.0.0.1", self.port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("m"), "logreg")


@pytest.fixture(scope="module")
def rows(model_dir: Path) -> list[list[float]]:
    lines = (model_dir / "holdout.csv").read_text().splitlines()[1:]
    return [[float(v) for v in line.split(",")[:-1]] for line in lines]


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    srv = Server(model_dir)
    yield srv
    assert srv.stop() == 0


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_predict_and_request_ids(server: Server, rows: list[list[float]]) -> None:
    client = server.client()
    reply = client.post_json("/predict", {"instances": rows[:3]}, {"X-Request-ID": "abc-123"})
    assert reply.status == 200
    assert reply.headers["x-request-id"] == "abc-123"
    assert reply.json()["model_version"] == "7.0.0"
    generated = client.get("/healthz").headers["x-request-id"]
    assert generated
    assert client.get("/healthz").headers["x-request-id"] != generated


def test_bad_input_is_4xx_and_the_server_stays_up(server: Server, rows: list[list[float]]) -> None:
    client = server.client()
    row = json.dumps(rows[0])
    bad: list[tuple[bytes, int]] = [
        (b'{"instances": [[1, 2, 3]]}', 422),  # wrong feature count
        (b'{"records": [{"bogus": 1}]}', 422),  # unknown / missing names
        (row.replace("[", '["12"', 1).replace('"12"', '"12",', 1).encode(), 422),
        (('{"instances": [' + row.replace(",", ', "ten",', 1) + "]}").encode(), 422),
        (('{"instances": [' + row.replace(",", ", NaN,", 1) + "]}").encode(), 422),
        (('{"instances": [' + row.replace(",", ", Infinity,", 1) + "]}").encode(), 422),
        (b'{"instances": [[1, 2', 400),  # malformed JSON
        (b"", 400),  # empty body
    ]
    for body, status in bad:
        reply = client.request("POST", "/predict", body, {"content-type": "application/json"})
        assert reply.status == status, (body[:80], reply.body)
        assert "error" in reply.json()
    big = b'{"instances": [' + b"[0.0]," * 300_000 + b"]}"
    response = raw_request(
        server.port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(big)).encode()
        + b"\r\n\r\n"
        + big[:1000],
    )
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"".join(b"%x\r\n%s\r\n" % (65536, b" " * 65536) for _ in range(20)) + b"0\r\n\r\n"
    assert raw_request(server.port, chunked).startswith(b"HTTP/1.1 413")
    assert raw_request(server.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    expect = raw_request(
        server.port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 9999999\r\n\r\n",
    )
    assert expect.startswith(b"HTTP/1.1 413")
    fresh = server.client()
    assert fresh.get("/healthz").status == 200
    assert fresh.post_json("/predict", {"instances": rows[:1]}).status == 200
    assert server.proc.poll() is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["instances", "records", "inputs", "x"]), c, max_size=3
            )
        ),
        max_leaves=30,
    ).map(lambda v: json.dumps(v).encode())
)
def test_generated_bodies_over_http_never_get_a_5xx(server: Server, body: bytes) -> None:
    client = server.client()
    reply = client.request("POST", "/predict", body)
    assert reply.status < 500, (body[:100], reply.body[:200])
    client.close()


def test_metrics_and_recent_predictions_cover_both_workers(
    server: Server, rows: list[list[float]]
) -> None:
    before = server.client().get("/metrics").body.decode()

    def count(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('mlcd_requests_total{route="/predict",status="200"}'):
                return float(line.split()[-1])
        return 0.0

    ids = [f"pair-{i}" for i in range(20)]
    for rid in ids:  # a new connection each time: the kernel spreads them over the workers
        c = server.client()
        assert c.post_json("/predict", {"instances": rows[:1]}, {"X-Request-ID": rid}).status == 200
        c.close()
    after = server.client().get("/metrics").body.decode()
    assert count(after) - count(before) == 20
    assert 'mlcd_model_info{name="breast-cancer",version="7.0.0"} 1' in after
    assert "mlcd_workers 2" in after
    recent = server.client().get("/v1/recent-predictions?limit=500").json()["predictions"]
    found = {r["request_id"]: r for r in recent}
    assert set(ids) <= set(found)
    assert all(found[i]["status"] == 200 and len(found[i]["predictions"]) == 1 for i in ids)


def test_sigterm_under_load_fails_no_in_flight_request(
    model_dir: Path, rows: list[list[float]]
) -> None:
    srv = Server(model_dir)
    body = json.dumps({"instances": rows[:20]}).encode()
    stop = threading.Event()
    outcomes: list[tuple[str, float]] = []  # ("ok"|"closed"|"refused"|failure text, time)
    lock = threading.Lock()

    def load() -> None:
        client = srv.client()
        while not stop.is_set():
            fresh = client._conn is None  # a new connection: the server may not have accepted it
            try:
                reply = client.request(
                    "POST", "/predict", body, {"content-type": "application/json"}
                )
            except ConnectionRefusedError:
                with lock:
                    outcomes.append(("refused", time.monotonic()))
                time.sleep(0.01)
                continue
            except OSError as exc:
                if fresh:  # connected into the closing listen queue, never accepted: not in flight
                    with lock:
                        outcomes.append(("refused", time.monotonic()))
                    time.sleep(0.01)
                    continue
                # sent on a connection the server had accepted and got no answer
                with lock:
                    outcomes.append((f"failed: {exc!r}", time.monotonic()))
                continue
            word = "ok" if reply.status == 200 else f"failed: HTTP {reply.status}"
            if reply.headers.get("connection") == "close":
                word = "closed" if reply.status == 200 else word
            with lock:
                outcomes.append((word, time.monotonic()))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(timeout=30)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    failures = [o for o in outcomes if o[0].startswith("failed")]
    assert not failures, failures[:5]
    assert code == 0, "".join(srv.log[-10:])
    answered = [o for o in outcomes if o[0] in ("ok", "closed")]
    assert len(answered) > 50
    assert any(word == "closed" for word, _ in outcomes), "no request was in flight at SIGTERM"
    assert any(t >= term for word, t in outcomes if word in ("ok", "closed"))
    assert any('"worker_stopped"' in line for line in srv.log)


def _answer_within(port: int, data: bytes, limit: float) -> tuple[bytes, float]:
    """Send `data` and read until the server closes; the answer and how long it took (the
    socket gives up after `limit` seconds, so a server that never closes fails the test)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"still open after {limit}s: {b''.join(chunks)!r}") from None
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def test_the_server_defends_itself_behind_no_router(model_dir: Path) -> None:
    """Slow or lying clients get a 408 and a closed connection within the timeouts, a
    worker's open connections are capped (503 beyond), numeric query parameters are strict."""
    srv = Server(
        model_dir,
        MLCD_WORKERS="1",
        MLCD_HEADER_TIMEOUT_S="1",
        MLCD_BODY_TIMEOUT_S="1",
        MLCD_MAX_CONNECTIONS="20",
    )
    try:
        predict = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        cases = {
            "partial header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ",
            "partial body": predict + b'Content-Length: 100\r\n\r\n{"instances": [[1',
            "length over the body": predict + b"Content-Length: 5000\r\n\r\n{}",
        }
        for name, data in cases.items():
            answer, took = _answer_within(srv.port, data, 15)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), (name, answer[:300])
            assert json.loads(body)["error"], name
            assert took < 15, name
        # a connection that never sends a byte is closed too
        answer, _ = _answer_within(srv.port, b"", 15)
        assert answer == b""
        # the cap: the 21st open connection is answered 503 (JSON) and closed
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(20)]
        try:
            time.sleep(0.3)
            answer, _ = _answer_within(srv.port, b"", 10)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer[:300]
            assert "too many open connections" in json.loads(body)["error"]
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        client = srv.client()
        try:
            for query in ("since=nan", "since=inf", "since=1e400", "limit=1_0", "limit=%205"):
                response = client.get(f"/v1/recent-predictions?{query}")
                assert response.status == 400, query
            assert client.get("/v1/recent-predictions?since=0&limit=5").status == 200
        finally:
            client.close()
    finally:
        assert srv.stop() == 0

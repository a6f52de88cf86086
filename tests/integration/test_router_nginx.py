"""The router's nginx under abuse, with the real nginx and stand-in model servers (local
processes, tests/integration/deploy/standin_server.py):

- 2,100 slow-body connections from one client address do not lock out another client;
- pipelined requests on one kept-alive connection are all answered;
- the router's own errors (400, 413, 414, 429, 494, 502) are JSON `{"error": ...}`, and
  headers the model server takes (up to 64 KiB) pass;
- a candidate killed under load costs zero client-visible errors (an inference POST it
  failed is retried once on the stable arm), and reloads under kept-alive clients too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlcd.ports import free_port
from mlcd.rollout.router import PER_CLIENT_CONNECTIONS, Backend, RouterSpec, Routing, render
from mlcd.tools.nginx import Nginx

STANDIN = Path(__file__).parent / "deploy" / "standin_server.py"
BODY = json.dumps({"records": [{"mean radius": 15.0, "mean texture": 20.0}]}).encode()
ATTACKER = "127.0.0.2"  # another client address on loopback (the router listens on .1)


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


Start = Callable[..., tuple[int, subprocess.Popen[bytes]]]


@pytest.fixture
def standin() -> Iterator[Start]:
    started: list[subprocess.Popen[bytes]] = []

    def start(version: str = "stable", delay_ms: int = 0) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        env = {
            **os.environ,
            "MLCD_PORT": str(port),
            "MLCD_MODEL_VERSION": version,
            "STANDIN_DELAY_MS": str(delay_ms),
        }
        proc = subprocess.Popen([sys.executable, str(STANDIN)], env=env)
        started.append(proc)
        wait_port(port)
        return port, proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Callable[[RouterSpec], Nginx]]:
    made: list[Nginx] = []

    def apply(spec: RouterSpec) -> Nginx:
        nginx = made[0] if made else Nginx(tmp_path / "nginx")
        if not made:
            made.append(nginx)
        nginx.apply(render(spec, nginx.prefix))
        wait_port(spec.port)
        deadline = time.monotonic() + 10
        needle = f'"generation": {spec.generation},'.encode()
        while time.monotonic() < deadline:
            status, _, body = request(spec.port, "GET", "/_mlcd/router")
            if status == 200 and needle in body:
                return nginx
            time.sleep(0.05)
        raise AssertionError("the router did not take the configuration")

    yield apply
    for nginx in made:
        nginx.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def raw(port: int, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send raw bytes, read until the router closes or stays silent for a second."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=(source, 0)
    ) as sock:
        sock.sendall(data)
        chunks = []
        sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def json_error(response: bytes, status: int) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head[:200]
    assert b"Content-Type: application/json" in head, head
    message = json.loads(body.decode().strip())["error"]
    assert isinstance(message, str)
    assert message
    return message


def single(port: int, backend: int, generation: int = 1) -> RouterSpec:
    return RouterSpec(port=port, mode="single", primary=(Backend(backend),), generation=generation)


def test_the_routers_own_errors_are_json(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    backend, _ = standin()
    port = free_port()
    router(single(port, backend))
    predict = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    assert "over the router's limit of 8m" in json_error(
        raw(port, predict + b"Content-Length: 9000000\r\n\r\n{}"), 413
    )
    long_uri = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert "request line" in json_error(raw(port, long_uri), 414)
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
    assert "header" in json_error(raw(port, big_header), 400)
    assert "could not parse" in json_error(raw(port, b"\x16\x03\x01 not http\r\n\r\n"), 400)
    # headers the model server takes (it allows 64 KiB in all) reach it
    status, _, _ = request(port, "GET", "/healthz", headers={"X-Big": "b" * 60_000})
    assert status == 200
    # no arm answers: the router's 502 is JSON too
    router(single(port, free_port(), generation=2))
    status, kind, body = request(
        port, "POST", "/predict", BODY, {"Content-Type": "application/json"}
    )
    assert (status, kind) == (502, "application/json")
    assert "no model server answered" in json.loads(body)["error"]


def test_pipelined_requests_are_all_answered(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    backend, _ = standin()
    port = free_port()
    router(single(port, backend))
    one = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )
    count = 50
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(one * count)  # every request before reading any answer
        data = b""
        deadline = time.monotonic() + 15
        while data.count(b"HTTP/1.1 200 OK") < count and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == count
    assert data.count(b'"predictions"') == count


def _raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def test_slow_bodies_from_one_client_do_not_lock_out_another(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    backend, _ = standin()
    port = free_port()
    router(single(port, backend))
    _raise_fd_limit(8192)
    slow: list[socket.socket] = []
    refused = 0
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    try:
        for _ in range(2100):
            sock = socket.create_connection(
                (("127.0.0.1", port)), timeout=5, source_address=(ATTACKER, 0)
            )
            sock.sendall(head)  # and never the rest of the body
            slow.append(sock)
        # the other client: every request answered, promptly, while all 2,100 are open
        clock = time.monotonic()
        statuses = Counter(
            request(port, "POST", "/predict", BODY, {"Content-Type": "application/json"})[0]
            for _ in range(20)
        )
        took = time.monotonic() - clock
        assert statuses == Counter({200: 20}), statuses
        assert took < 10, took
        # what the slow client got: the ones over the per-address limit a JSON 429 at once
        for sock in slow:
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError, BlockingIOError, ConnectionResetError):
                if sock.recv(200).startswith(b"HTTP/1.1 429"):
                    refused += 1
        assert refused >= 2100 - PER_CLIENT_CONNECTIONS - 10, refused
    finally:
        for sock in slow:
            sock.close()
    print(
        f"\n2,100 slow-body connections: {refused} refused with 429; "
        f"20/20 other requests in {took:.2f}s"
    )


def _load(
    port: int, stop: threading.Event, results: Counter[str], threads: int = 4
) -> list[threading.Thread]:
    """Bounded clients on kept-alive connections; any non-200 or exception is an error."""

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request(
                    "POST", "/predict", body=BODY, headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                results["200" if response.status == 200 else f"status {response.status}"] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                results[f"error {type(exc).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    return workers


def test_a_killed_candidate_costs_no_client_request(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    stable, _ = standin("stable")
    candidate, candidate_proc = standin("candidate", delay_ms=20)  # requests in flight on it
    port = free_port()
    router(
        RouterSpec(
            port=port,
            mode="split",
            primary=(Backend(stable, 50), Backend(candidate, 50)),
            generation=1,
        )
    )
    stop, results = threading.Event(), Counter[str]()
    workers = _load(port, stop, results)
    time.sleep(2)
    before = results["200"]
    candidate_proc.send_signal(signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for worker in workers:
        worker.join(15)
    errors = {k: v for k, v in results.items() if k != "200"}
    print(f"\ncandidate killed under load: {results['200']} answered (200), errors {errors}")
    assert before > 20
    assert results["200"] > before + 20
    assert errors == {}


def test_reloads_under_kept_alive_clients_cost_nothing(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    """Canary steps and switches reload the routing side; clients' kept-alive
    connections are on the client side, which does not reload."""
    stable, _ = standin("stable")
    candidate, _ = standin("candidate")
    port = free_port()
    router(single(port, stable))
    stop, results = threading.Event(), Counter[str]()
    workers = _load(port, stop, results)
    steps = [(90, 10), (50, 50), (0, 100), (100, 0)] * 3
    for generation, (a, b) in enumerate(steps, start=2):
        primary = tuple(x for x in (Backend(stable, a), Backend(candidate, b)) if x.weight)
        mode = "split" if len(primary) > 1 else "single"
        router(RouterSpec(port=port, mode=mode, primary=primary, generation=generation))
        time.sleep(0.3)
    stop.set()
    for worker in workers:
        worker.join(15)
    errors = {k: v for k, v in results.items() if k != "200"}
    print(f"\n{len(steps)} reloads under load: {results['200']} answered, errors {errors}")
    assert results["200"] > 100
    assert errors == {}


def test_an_http10_request_without_host_is_served_and_version_errors_are_json(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    """HTTP/1.0 needs no Host: the routing side (HTTP/1.1) still gets one, so the request is
    answered by the model server, not with nginx's HTML 400 page."""
    backend, _ = standin()
    port = free_port()
    router(single(port, backend))
    post = (
        b"POST /predict HTTP/1.0\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    head, _, body = raw(port, post).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    assert "predictions" in json.loads(body)
    assert raw(port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    assert "HTTP version" in json_error(raw(port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505)


def _recent_ids(port: int) -> dict[str, int]:
    """request id → how many times the stand-in on `port` answered it."""
    _, _, body = request(port, "GET", "/v1/recent-predictions?limit=2000")
    return dict(Counter(str(r["request_id"]) for r in json.loads(body)["predictions"]))


def test_a_sticky_split_keeps_users_and_copies_the_canarys_requests_to_stable(
    standin: Start, router: Callable[[RouterSpec], Nginx]
) -> None:
    """What the judge's like-for-like predictions rest on: with a sticky key, every request
    the canary answers by key or by request-id hash is copied to stable (same id), nothing
    else is copied, a tester's forced request neither; each user stays on one arm."""
    stable, _ = standin("stable")
    canary, _ = standin("canary")
    port = free_port()
    router(
        RouterSpec(
            port=port,
            mode="split",
            primary=(Backend(stable, 70), Backend(canary, 30)),
            generation=1,
            routing=Routing("X-MLCD-Version", "X-User-Id").salted("0.2.0"),
        )
    )
    answered: dict[str, str] = {}  # request id → the version that answered
    users: dict[str, set[str]] = {}
    forced: list[str] = []
    for n in range(600):
        rid = f"req-{n}"
        headers = {"X-Request-ID": rid, "Content-Type": "application/json"}
        if n % 6 == 0:
            headers["X-MLCD-Version"] = "canary"
            forced.append(rid)
        elif n % 2 == 0:
            headers["X-User-Id"] = f"user-{n % 100}"
        status, _, body = request(port, "POST", "/predict", BODY, headers)
        assert status == 200, body
        version = json.loads(body)["model_version"]
        answered[rid] = version
        if "X-User-Id" in headers:
            users.setdefault(headers["X-User-Id"], set()).add(version)
    assert all(len(v) == 1 for v in users.values()), users
    on_canary = {rid for rid, v in answered.items() if v == "canary" and rid not in forced}
    unkeyed = [rid for rid in answered if int(rid[4:]) % 2 == 1]
    share = sum(1 for rid in unkeyed if answered[rid] == "canary") / len(unkeyed)
    assert 0.15 <= share <= 0.45, share  # the request-id hash at the 30 % weight
    time.sleep(1.0)  # the copies are sent after the answers
    at_stable, at_canary = _recent_ids(stable), _recent_ids(canary)
    assert set(at_canary) == on_canary | set(forced)
    copies = {rid for rid in at_stable if answered[rid] == "canary"}
    assert copies == on_canary  # every one of the canary's, no tester's
    assert all(at_stable[rid] == 1 for rid in at_stable)  # stable's own are not copied
    print(f"\nsticky split: {len(on_canary)} canary requests copied, unkeyed share {share:.2f}")

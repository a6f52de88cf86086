"""HTTP/1.1 on asyncio (uvloop + httptools), micro-batching, worker processes, shutdown.

One process per core shares the port with SO_REUSEPORT (the kernel spreads connections).
In each process, prediction requests that arrive while the model is busy wait in a queue
and go into the next `predict` call together; the call runs on one inference thread, so
the event loop keeps parsing, answering health checks and writing responses meanwhile.
On SIGTERM each process stops accepting, finishes every request it has read (answering it
with `connection: close`), closes idle connections and exits; the parent waits for them.

Behind no router (Kubernetes, a Swarm overlay, a client that reaches the container) the
server defends itself as nginx does: a request's line and headers must arrive within
`header_timeout_s`, its body may pause at most `body_timeout_s` between reads (else 408 and
the connection closed), idle keep-alive connections close after `keepalive_s`, and a worker
holds at most `max_connections` open connections (the next ones get a 503 and are closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.serve.app import App, PredictJob, Response, error_response
from mlcd.serve.model import load
from mlcd.serve.settings import ServeSettings

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STATUS_LINE = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}
_MAX_HEAD_BYTES = 64 * 1024
_TOO_MANY_BODY = b'{"error": "too many open connections to this server; retry shortly"}'
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_TOO_MANY_BODY)).encode() + b"\r\nretry-after: 1\r\n"
    b"connection: close\r\n\r\n" + _TOO_MANY_BODY
)
_MAX_PIPELINE = 64
# Gathering the next batch after a slow model call (Batcher._done): share of the call's
# time, the longest wait, and the shortest worth scheduling (fast models never wait).
_GATHER_SHARE = 0.25
_GATHER_MAX_S = 0.005
_GATHER_MIN_S = 0.0003
_ID_CHARS = frozenset(range(0x21, 0x7F))


def log(event: str, **fields: Any) -> None:
    """One JSON line on stderr (the container's log)."""
    record = {"time": round(time.time(), 3), "event": event, "pid": os.getpid(), **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def _import_http() -> tuple[Any, Any]:
    try:
        import httptools
        import uvloop
    except ImportError as exc:
        raise EnvironmentMissing(
            f"the server needs the Python package `{exc.name}`",
            hint="pip install uvloop httptools (or reinstall mlcd: pip install .)",
        ) from exc
    return httptools, uvloop


class _Slot:
    """A response position on a connection (responses go out in request order)."""

    __slots__ = ("close", "data")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.close = False


class Connection(asyncio.Protocol):
    """One client connection: parse requests, queue responses in order."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.app = worker.app
        self.transport: asyncio.Transport | None = None
        self.parser: Any = worker.httptools.HttpRequestParser(self)
        self.queue: deque[_Slot] = deque()
        self.closing = False
        self.in_request = False
        self.head_done = False
        self.requests = 0  # requests begun on this connection
        self.last_active = time.monotonic()
        self.began = self.last_active  # when the request in progress began to arrive
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.request_id: bytes | None = None
        self.expect_continue = False
        self.content_length: int | None = None
        self.content_encoding = ""
        self.content_type = ""  # /invocations reads these two (MLflow's protocol, SageMaker)
        self.accept = ""
        self.header_length: int | None = None
        self.bad_header: str | None = None
        self.started = 0.0

    # -------------------------------------------------------------- transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if len(self.worker.connections) >= self.worker.settings.max_connections:
            self.worker.refused += 1
            self.closing = True
            self.transport.write(_TOO_MANY)
            self.transport.close()
            return
        self.worker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self.worker.connections.discard(self)
        self.closing = True
        self.transport = None

    def pause_writing(self) -> None:
        self._pause()

    def resume_writing(self) -> None:
        self._resume()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except self.worker.httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except self.worker.httptools.HttpParserError as exc:
            if not self.closing:
                self._fail(400, f"malformed HTTP request: {exc}")

    def idle(self) -> bool:
        return not self.in_request and not self.queue

    # --------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self.in_request = True
        self.head_done = False
        self.requests += 1
        self.began = time.monotonic()
        self.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        if self.head_size > _MAX_HEAD_BYTES:
            if not self.closing:
                self._fail(431, f"request line over {_MAX_HEAD_BYTES} bytes")
            return
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > _MAX_HEAD_BYTES:
            return
        lower = name.lower()
        if lower == b"x-request-id":
            if 0 < len(value) <= 200 and all(c in _ID_CHARS for c in value):
                self.request_id = value
        elif lower == b"content-length":
            with contextlib.suppress(ValueError):
                self.content_length = int(value)
        elif lower == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        elif lower == b"content-encoding":
            self.content_encoding = value.decode("latin-1")
        elif lower == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lower == b"accept":
            self.accept = value.decode("latin-1")
        elif lower == b"inference-header-content-length":
            try:
                self.header_length = int(value)
            except ValueError:
                self.bad_header = "Inference-Header-Content-Length must be a byte count"

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.closing:
            return
        if self.head_size > _MAX_HEAD_BYTES:
            self._fail(431, f"request line and headers over {_MAX_HEAD_BYTES} bytes")
            return
        if self.bad_header is not None:
            self._fail(400, self.bad_header)
            return
        length = self.content_length
        limit = self.worker.settings.max_body_bytes
        if length is not None and length > limit:
            self._fail(413, f"the body is {length} bytes; the limit is {limit}")
            return
        if self.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self.body_size += len(body)
        limit = self.worker.settings.max_body_bytes
        if self.body_size > limit:
            self._fail(413, f"the body is over the limit of {limit} bytes")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        self.in_request = False
        keep_alive = bool(self.parser.should_keep_alive()) and not self.worker.draining
        method = self.parser.get_method().decode("latin-1")
        target = self.url.decode("latin-1")
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        rid = self.request_id or self.worker.new_request_id()
        started = self.started
        slot = _Slot()
        slot.close = not keep_alive
        self.queue.append(slot)
        try:
            result = self.app.handle(
                method,
                target,
                body,
                rid.decode("ascii"),
                started,
                content_encoding=self.content_encoding,
                header_length=self.header_length,
                content_type=self.content_type,
                accept=self.accept,
            )
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, not the server
            log("error", where="handle", error=repr(exc)[:500])
            result = error_response(500, "internal error while reading the request")
        if isinstance(result, PredictJob):
            self.worker.batcher.submit(result, lambda job: self._finish_job(slot, job, rid))
            if len(self.queue) >= _MAX_PIPELINE:
                self._pause()
            return
        if method == "HEAD":
            result = Response(result.status, b"", result.content_type, result.route, result.headers)
        if result.status >= 400:
            self.app.remember_error(result.route, rid.decode("ascii"), result.status, started)
        self._complete(slot, result, rid, started)

    # --------------------------------------------------------------- responses

    def _finish_job(self, slot: _Slot, job: PredictJob, rid: bytes) -> None:
        try:
            response = self.app.finish(job)
        except Exception as exc:  # noqa: BLE001 - same as above
            log("error", where="finish", error=repr(exc)[:500])
            response = error_response(500, "internal error while answering", job.route)
        if response.status >= 500:
            log("model_error", request_id=job.request_id, error=job.error)
        self._complete(slot, response, rid, job.started)

    def _complete(self, slot: _Slot, response: Response, rid: bytes, started: float) -> None:
        parts = [
            _STATUS_LINE.get(response.status) or f"HTTP/1.1 {response.status} Status\r\n".encode(),
            b"content-type: ",
            response.content_type,
            b"\r\ncontent-length: ",
            str(len(response.body)).encode(),
            b"\r\nx-request-id: ",
            rid,
            b"\r\n",
        ]
        for key, value in response.headers:
            parts += [key, b": ", value, b"\r\n"]
        if slot.close:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", response.body]
        slot.data = b"".join(parts)
        self.worker.app.metrics.observe_request(
            response.route, response.status, time.perf_counter() - started
        )
        self._flush()

    def _flush(self) -> None:
        queue = self.queue
        while queue and queue[0].data is not None:
            slot = queue.popleft()
            if self.transport is None:
                return
            self.transport.write(slot.data)  # type: ignore[arg-type]
            if slot.close:
                self.closing = True
                queue.clear()
                self.transport.close()
                return
        if self.paused and len(queue) < _MAX_PIPELINE // 2:
            self._resume()

    def _fail(self, status: int, message: str) -> None:
        """Answer a broken request after those before it, then close the connection."""
        self.in_request = False
        slot = _Slot()
        slot.close = True
        self.queue.append(slot)
        rid = self.request_id or self.worker.new_request_id()
        started = self.started or time.perf_counter()
        route = "/predict" if self.url.split(b"?")[0] == b"/predict" else "other"
        self.app.remember_error(route, rid.decode("ascii"), status, started)
        self._complete(slot, error_response(status, message, route), rid, started)
        self.closing = True

    def timed_out(self, now: float) -> str | None:
        """Why a request in progress has waited too long for its client, else None."""
        if not self.in_request or self.closing:
            return None
        settings = self.worker.settings
        if not self.head_done and now - self.began > settings.header_timeout_s:
            return (
                f"the request line and headers did not arrive within "
                f"{settings.header_timeout_s:g} s"
            )
        if self.head_done and now - self.last_active > settings.body_timeout_s:
            return f"the body stopped arriving for {settings.body_timeout_s:g} s"
        return None

    def time_out(self, why: str) -> None:
        """Answer 408 (after the responses before it) and close."""
        self._fail(408, why)
        if self.transport is not None and not self.queue:
            self.transport.close()

    def close_if_idle(self) -> bool:
        if self.transport is not None and self.idle():
            self.closing = True
            self.transport.close()
            return True
        return False


class Batcher:
    """Coalesce prediction requests into one model call at a time, on one thread."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, settings: ServeSettings) -> None:
        self.app = app
        self.loop = loop
        self.wait_s = settings.batch_wait_ms / 1000.0
        self.max_rows = settings.max_batch_rows
        self.pending: list[tuple[PredictJob, Callable[[PredictJob], None]]] = []
        self.busy = False
        self.scheduled = False
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="mlcd-predict")
        self.batches = 0
        self.rows = 0
        self._batch_started = 0.0

    def submit(self, job: PredictJob, done: Callable[[PredictJob], None]) -> None:
        self.pending.append((job, done))
        if not self.busy and not self.scheduled:
            self.scheduled = True
            if self.wait_s > 0:
                self.loop.call_later(self.wait_s, self._flush)
            else:
                self.loop.call_soon(self._flush)

    def idle(self) -> bool:
        return not self.busy and not self.pending

    def _flush(self) -> None:
        self.scheduled = False
        if self.busy or not self.pending:
            return
        batch: list[tuple[PredictJob, Callable[[PredictJob], None]]] = []
        rows = 0
        while self.pending:
            n = len(self.pending[0][0].parsed.rows)
            if batch and rows + n > self.max_rows:
                break
            batch.append(self.pending.pop(0))
            rows += n
        self.busy = True
        self.batches += 1
        self.rows += rows
        self._batch_started = time.perf_counter()
        jobs = [job for job, _ in batch]
        future = self.loop.run_in_executor(self.executor, self.app.run_batch, jobs)
        future.add_done_callback(lambda f: self._done(batch, f))

    def _done(
        self,
        batch: list[tuple[PredictJob, Callable[[PredictJob], None]]],
        future: asyncio.Future[None],
    ) -> None:
        self.busy = False
        took = time.perf_counter() - self._batch_started
        error = future.exception()
        for job, done in batch:
            if error is not None and job.output is None and job.error is None:
                job.error = f"{type(error).__name__}: {error}"[:500]
            done(job)
        # Several clients were answered at once: each sends its next request within a
        # round trip. For a slow model, wait a little (a quarter of its time, at most
        # 5 ms) so that they join the next call instead of leaving it half full.
        gather = min(took * _GATHER_SHARE, _GATHER_MAX_S) if len(batch) > 1 else 0.0
        if gather >= _GATHER_MIN_S and not self.scheduled:
            self.scheduled = True
            self.loop.call_later(gather, self._flush)
        elif self.pending and not self.scheduled:
            self._flush()


class Worker:
    """One serving process: an event loop, its connections and its batcher."""

    def __init__(self, app: App, settings: ServeSettings, index: int, httptools: Any) -> None:
        self.app = app
        self.settings = settings
        self.index = index
        self.httptools = httptools
        self.connections: set[Connection] = set()
        self.refused = 0  # connections answered 503: over max_connections
        self.draining = False
        self._prefix = f"{os.urandom(4).hex()}{index:x}-".encode()
        self._counter = 0
        self.batcher: Batcher
        self._stop: asyncio.Event

    def new_request_id(self) -> bytes:
        self._counter += 1
        return self._prefix + str(self._counter).encode()

    async def run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.batcher = Batcher(self.app, loop, self.settings)
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=2048)
        try:
            await loop.run_in_executor(self.batcher.executor, self.app.model.warm_up)
        except Exception as exc:  # noqa: BLE001 - the server still starts; requests will say why
            log("warning", message=f"warm-up prediction failed: {exc}")
        self.app.ready = True
        sweeper = loop.create_task(self._sweep())
        await self._stop.wait()
        await self._drain(server)
        sweeper.cancel()
        self.batcher.executor.shutdown(wait=True)

    async def _sweep(self) -> None:
        step = min(1.0, self.settings.header_timeout_s / 4, self.settings.body_timeout_s / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            cutoff = now - self.settings.keepalive_s
            silent = now - self.settings.header_timeout_s  # connected, never sent a byte
            for conn in list(self.connections):
                why = conn.timed_out(now)
                if why is not None:
                    conn.time_out(why)
                elif conn.last_active < cutoff or (
                    conn.requests == 0 and conn.last_active < silent
                ):
                    conn.close_if_idle()

    async def _drain(self, server: asyncio.AbstractServer) -> None:
        started = time.monotonic()
        self.draining = True
        self.app.draining = True
        server.close()
        deadline = started + self.settings.grace_s
        grace_idle = 0.1
        while self.connections and time.monotonic() < deadline:
            now = time.monotonic()
            for conn in list(self.connections):
                if now - conn.last_active >= grace_idle:
                    conn.close_if_idle()
            await asyncio.sleep(0.02)
        left = len(self.connections)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        log(
            "worker_stopped",
            worker=self.index,
            seconds=round(time.monotonic() - started, 3),
            aborted_connections=left,
            batches=self.batcher.batches,
            rows=self.batcher.rows,
        )


def _listen_socket(host: str, port: int, *, reuse_port: bool, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EnvironmentMissing(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another port (MLCD_PORT or --port; 0 picks a free one) or stop "
            "what holds it",
        ) from exc
    if listen:
        sock.listen(2048)
    sock.setblocking(False)  # noqa: FBT003 - the socket API
    return sock


def _limit_threads() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        pass


def _run_worker(app: App, settings: ServeSettings, index: int, sock: socket.socket) -> None:
    httptools, uvloop = _import_http()
    app.bind(index)
    _limit_threads()
    worker = Worker(app, settings, index, httptools)
    uvloop.run(worker.run(sock))


class _Supervisor:
    """The forked workers of a multi-worker server, each listening on the reserved port
    with SO_REUSEPORT: SIGTERM/SIGINT are forwarded to them; a worker that exits is
    started again, unless they keep exiting."""

    def __init__(self, app: App, settings: ServeSettings, port: int) -> None:
        self.app = app
        self.settings = settings
        self.port = port
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False

    def spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                sock = _listen_socket(self.settings.host, self.port, reuse_port=True, listen=True)
                _run_worker(self.app, self.settings, index, sock)
            except BaseException as exc:  # noqa: BLE001 - report, then leave the child
                log("worker_failed", worker=index, error=repr(exc)[:500])
                code = 1
            finally:
                os._exit(code)
        self.children[pid] = index

    def forward(self, _signum: int, _frame: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def supervise(self) -> None:
        """Until every worker has exited: restart the ones that exit on their own."""
        failures = 0
        started = time.monotonic()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = self.children.pop(pid, -1)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping or index < 0:
                continue
            log("worker_exited", worker=index, exit_code=code)
            failures += 1
            if failures > 5 and time.monotonic() - started < 60:
                log("giving_up", message="workers keep exiting; stopping the server")
                self.forward(signal.SIGTERM, None)
                continue
            self.spawn(index)


def _start(settings: ServeSettings) -> App:
    """The app with its model loaded (one BLAS thread per worker)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    _import_http()
    model = load(settings.model_dir, version=settings.model_version)
    app = App(
        model,
        workers=settings.worker_count,
        recent_capacity=settings.recent_capacity,
        max_body_bytes=settings.max_body_bytes,
    )
    log(
        "starting",
        model=model.name,
        version=model.version,
        task=model.task,
        features=model.n_features,
        workers=settings.worker_count,
        host=settings.host,
        port=settings.port,
    )
    return app


def serve(settings: ServeSettings, *, announce: Callable[[str, int], None] | None = None) -> int:
    """Load the model, start the workers, and block until SIGTERM/SIGINT has drained them."""
    app = _start(settings)
    workers = settings.worker_count
    host = settings.host
    if workers == 1:
        sock = _listen_socket(host, settings.port, reuse_port=False, listen=True)
        port = sock.getsockname()[1]
        log("listening", host=host, port=port, workers=1)
        if announce:
            announce(host, port)
        _run_worker(app, settings, 0, sock)
        sock.close()
        log("stopped")
        return 0
    # Reserve the port (bound, not listening), then each worker listens on it with
    # SO_REUSEPORT; the reservation makes port 0 work and keeps the port ours.
    reservation = _listen_socket(host, settings.port, reuse_port=True, listen=False)
    port = reservation.getsockname()[1]
    gc.collect()
    gc.freeze()  # keep the model's pages shared between the forked workers
    supervisor = _Supervisor(app, settings, port)
    signal.signal(signal.SIGTERM, supervisor.forward)
    signal.signal(signal.SIGINT, supervisor.forward)
    for index in range(workers):
        supervisor.spawn(index)
    log("listening", host=host, port=port, workers=workers)
    if announce:
        announce(host, port)
    supervisor.supervise()
    reservation.close()
    log("stopped")
    return 0 if supervisor.stopping else 1


def check_model(settings: ServeSettings) -> dict[str, Any]:
    """Load the model as the server would, and predict one row (used by `--check`)."""
    model = load(settings.model_dir, version=settings.model_version)
    model.warm_up()
    return model.card()


__all__ = ["ServeSettings", "UserInputError", "check_model", "serve"]

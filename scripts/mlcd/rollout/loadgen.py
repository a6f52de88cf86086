"""Synthetic traffic: held-out rows sent at a steady rate, in a bounded loop, to 127.0.0.1
or to the environment's own address on a Docker host.

Like Flagger's load tester, the controller runs one while it analyses a rollout that has
`load-test: {rps: N}`, so that a staging environment without users has data to judge. Rows
come from `train/holdout.csv` (the features; the target column is dropped) as typed rows
(`mlcd.typedrows`, from the feature schema in `train/model.json` beside it: null for a gap,
strings as strings, dates as ISO strings) and are sent as ``POST /predict {"records":
[row]}``, cycling through the rows; the shadow comparison sends the same rows. The loop is
bounded: it stops when told to or after `max_seconds`, and never sends more than `rps`
requests a second.
"""

from __future__ import annotations

import csv
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd import modelmeta, typedrows
from mlcd.errors import UserInputError


def _value(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def holdout_rows(path: Path, target: str, limit: int = 5000) -> list[dict[str, Any]]:
    """The feature values of the held-out rows, as typed records."""
    schema = path.parent / modelmeta.META_FILE
    if schema.is_file():
        features = modelmeta.ModelMeta.load(schema).feature_dicts()
        if features:
            try:
                rows = typedrows.holdout_records(path, features, target, limit=limit)
            except OSError as exc:
                raise UserInputError(
                    f"cannot read the held-out rows for the load test: {path} ({exc})"
                ) from exc
            if not rows:
                raise UserInputError(f"{path} has no rows to send in the load test")
            return rows
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = []
            for row in reader:
                rows.append({k: _value(v) for k, v in row.items() if k != target and k})
                if len(rows) >= limit:
                    break
    except OSError as exc:
        raise UserInputError(
            f"cannot read the held-out rows for the load test: {path} ({exc.strerror})",
            hint="run `mlcd train` first (it writes train/holdout.csv), with the same --out",
        ) from exc
    if not rows:
        raise UserInputError(f"{path} has no rows to send in the load test")
    return rows


@dataclass
class LoadStats:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection_errors": self.connection_errors,
        }


class LoadGenerator:
    """Sends rows to one or more ports of 127.0.0.1 at `rps` per port, in background threads.

    With several ports, every row goes to each of them with the same X-Request-ID (used to
    compare a blue/green preview with the active version on identical requests).
    """

    def __init__(
        self,
        ports: Sequence[int],
        rows: Sequence[dict[str, Any]],
        rps: float,
        *,
        path: str = "/predict",
        max_seconds: float = 3600.0,
        workers: int = 4,
        id_prefix: str = "mlcd-load",
        host: str = "127.0.0.1",
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self.host = host  # 127.0.0.1, or a deploy target's own address
        self.ports = list(ports)
        self.bodies = [json.dumps({"records": [row]}).encode("utf-8") for row in rows]
        self.rps = rps
        self.path = path
        self.max_seconds = max_seconds
        self.workers = max(1, workers)
        self.id_prefix = id_prefix
        self.stats = {port: LoadStats() for port in self.ports}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._next = 0

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stop.clear()
        self._started = time.monotonic()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, daemon=True, name=f"mlcd-load-{index}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def _ticket(self) -> int | None:
        """The number of the next request, waiting until its time comes; None to stop."""
        with self._lock:
            number = self._next
            self._next += 1
        due = self._started + number / self.rps
        while True:
            if self._stop.is_set() or time.monotonic() - self._started > self.max_seconds:
                return None
            delay = due - time.monotonic()
            if delay <= 0:
                return number
            self._stop.wait(min(delay, 0.2))

    def _work(self) -> None:
        conns: dict[int, http.client.HTTPConnection] = {}
        while (number := self._ticket()) is not None:
            body = self.bodies[number % len(self.bodies)]
            request_id = f"{self.id_prefix}-{number}"
            for port in self.ports:
                self._send(conns, port, body, request_id)
        for conn in conns.values():
            conn.close()

    def _send(
        self, conns: dict[int, http.client.HTTPConnection], port: int, body: bytes, request_id: str
    ) -> None:
        stats = self.stats[port]
        for attempt in (1, 2):
            conn = conns.get(port)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, port, timeout=10)
                conns[port] = conn
            try:
                conn.request(
                    "POST",
                    self.path,
                    body=body,
                    headers={"Content-Type": "application/json", "X-Request-ID": request_id},
                )
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conns.pop(port, None)
                if attempt == 1:
                    continue  # a kept-alive connection closed by the server: retry once
                with self._lock:
                    stats.sent += 1
                    stats.connection_errors += 1
                return
            with self._lock:
                stats.sent += 1
                stats.statuses[response.status] += 1
            return

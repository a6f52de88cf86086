"""A small HTTP client for talking to a model server on 127.0.0.1 (build's contract test,
tests and tools). Standard library only."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive connection to host:port; reconnects when the server closed it."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            self.close()
            raise
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_json(self, path: str, data: Any, headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps(data).encode()
        return self.request(
            "POST", path, body, {"content-type": "application/json", **(headers or {})}
        )

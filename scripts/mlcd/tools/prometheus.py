"""Prometheus' HTTP API (instant queries): the adapter the Kubernetes judge reads metrics with.

Standard library only, so that it runs in the serving image (which carries mlcd's runtime but
not its configuration libraries). ``GET <address>/api/v1/query?query=…`` answers
``{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {…},
"value": [time, "value"]}]}}``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any


class QueryError(Exception):
    """A query could not be answered (unreachable, refused, malformed)."""


Series = tuple[Mapping[str, str], float]


def query(address: str, promql: str, *, timeout: float = 10.0) -> list[Series]:
    """The instant vector of `promql`: (labels with __name__, value) per series."""
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QueryError(f"{address!r} is not an http(s) address of a Prometheus server")
    url = f"{address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only  # nosec B310
            body = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise QueryError(f"GET {address}/api/v1/query: {exc}") from exc
    return parse_vector(body)


def parse_vector(body: bytes | str) -> list[Series]:
    try:
        payload: Any = json.loads(body)
    except ValueError as exc:
        raise QueryError(f"Prometheus answered something that is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error") if isinstance(payload, dict) else None
        raise QueryError(f"Prometheus refused the query: {error or payload!r:.200}")
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise QueryError("Prometheus did not answer an instant vector")
    out: list[Series] = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in dict(item["metric"]).items()}
            value = float(item["value"][1])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise QueryError(f"a series Prometheus answered is malformed: {item!r:.200}") from exc
        out.append((labels, value if not math.isnan(value) else math.nan))
    return out

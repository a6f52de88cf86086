"""Reading an arm's metrics: the server's Prometheus text and its recent predictions.

The model server (`mlcd serve`) exposes
``mlcd_requests_total{route,status}``, ``mlcd_request_duration_seconds_bucket{route,le}``,
``mlcd_predictions_total{class}``, ``mlcd_prediction_score_bucket{le}`` and
``mlcd_model_info{name,version}`` (and, when the server exports it,
``process_start_time_seconds``) on ``/metrics``, and
``GET /v1/recent-predictions?limit=N`` →
``{"predictions": [{"request_id", "predictions", "status", "latency_ms", "time"}]}``.
A `Snapshot` is one reading of the counters; the difference of two is an `ArmWindow` for the
judge. A difference that makes no sense — a NaN or infinite reading, a counter that went down,
a process start time that changed (the arm restarted), more errors than requests — is a
`MetricsError`: an error reading, not a verdict. Parsing is pure; `ArmReader` does the HTTP, to
127.0.0.1 only.
"""

from __future__ import annotations

import bisect
import http.client
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mlcd.rollout.judge import ArmWindow

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_NOT_INFERENCE = ("health", "ready", "live", "metrics", "metadata", "recent", "_mlcd")


class MetricsError(Exception):
    """An arm's metrics could not be read or make no sense (a measurement error)."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_prometheus(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments and blank lines skipped)."""
    out: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = {
            k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for k, v in _LABEL.findall(match.group("labels") or "")
        }
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        out.append(Sample(match.group("name"), labels, value))
    return out


def is_inference_route(route: str) -> bool:
    """Requests to prediction routes count; health, metrics and metadata do not."""
    lowered = route.lower()
    if any(word in lowered for word in _NOT_INFERENCE):
        return False
    return "predict" in lowered or "infer" in lowered


def _le(labels: Mapping[str, str]) -> float:
    raw = labels.get("le", "+Inf")
    return math.inf if raw in ("+Inf", "Inf", "inf") else float(raw)


@dataclass(frozen=True)
class Snapshot:
    """One reading of an arm's counters."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: Mapping[float, float] = field(default_factory=dict)
    classes: Mapping[str, float] = field(default_factory=dict)
    score_buckets: Mapping[float, float] = field(default_factory=dict)
    model_version: str | None = None
    start_time: float | None = None


START_TIME_NAMES = ("process_start_time_seconds", "mlcd_process_start_time_seconds")


def snapshot(samples: Iterable[Sample]) -> Snapshot:
    requests = errors = 0.0
    latency: dict[float, float] = {}
    classes: dict[str, float] = {}
    scores: dict[float, float] = {}
    version: str | None = None
    start: float | None = None
    for s in samples:
        if s.name in START_TIME_NAMES:
            start = s.value if start is None else min(start, s.value)
            continue
        if s.name == "mlcd_requests_total" and is_inference_route(s.labels.get("route", "")):
            requests += s.value
            if s.labels.get("status", "").startswith("5"):
                errors += s.value
        elif s.name == "mlcd_request_duration_seconds_bucket" and is_inference_route(
            s.labels.get("route", "")
        ):
            bound = _le(s.labels)
            latency[bound] = latency.get(bound, 0.0) + s.value
        elif s.name == "mlcd_predictions_total":
            key = s.labels.get("class", "")
            classes[key] = classes.get(key, 0.0) + s.value
        elif s.name == "mlcd_prediction_score_bucket":
            bound = _le(s.labels)
            scores[bound] = scores.get(bound, 0.0) + s.value
        elif s.name == "mlcd_model_info" and s.value:
            version = s.labels.get("version")
    return Snapshot(requests, errors, latency, classes, scores, version, start)


def snapshot_problems(snap: Snapshot) -> list[str]:
    """Why one reading cannot be used (empty: it can)."""
    out: list[str] = []
    values = [snap.requests, snap.errors, *snap.classes.values()]
    values += [*snap.latency_buckets.values(), *snap.score_buckets.values()]
    if snap.start_time is not None:
        values.append(snap.start_time)
    if any(not math.isfinite(v) for v in values):
        out.append("a NaN or infinite value in /metrics")
    for name, buckets in (("latency", snap.latency_buckets), ("score", snap.score_buckets)):
        counts = [buckets[b] for b in sorted(buckets)]
        if any(b < a for a, b in itertools.pairwise(counts)):
            out.append(f"{name} histogram buckets that are not cumulative")
    if snap.errors > snap.requests:
        out.append(f"more errors ({snap.errors:g}) than requests ({snap.requests:g})")
    return out


def _delta_buckets(
    before: Mapping[float, float], after: Mapping[float, float]
) -> tuple[tuple[float, int], ...]:
    return tuple(
        (bound, max(0, round(after[bound] - before.get(bound, 0.0)))) for bound in sorted(after)
    )


def _decreased(before: Mapping[Any, float], after: Mapping[Any, float]) -> bool:
    return any(after.get(key, 0.0) < value for key, value in before.items())


def window(before: Snapshot, after: Snapshot, latencies_ms: Sequence[float] = ()) -> ArmWindow:
    """What happened between two snapshots.

    Raises `MetricsError` (an error reading) when either reading is unusable, when the arm
    restarted (its process start time changed, or a counter went down), or when the interval
    has more errors than requests.
    """
    problems = snapshot_problems(before) + snapshot_problems(after)
    if problems:
        raise MetricsError(f"unusable metrics reading: {'; '.join(dict.fromkeys(problems))}")
    if (
        before.start_time is not None
        and after.start_time is not None
        and before.start_time != after.start_time
    ):
        raise MetricsError(
            "the arm restarted between two readings (process start time "
            f"{before.start_time:.0f} → {after.start_time:.0f})"
        )
    went_down = [
        what
        for what, old, new in (
            ("requests", before.requests, after.requests),
            ("errors", before.errors, after.errors),
        )
        if new < old
    ]
    if _decreased(before.latency_buckets, after.latency_buckets):
        went_down.append("latency buckets")
    if _decreased(before.classes, after.classes):
        went_down.append("class counts")
    if _decreased(before.score_buckets, after.score_buckets):
        went_down.append("score buckets")
    if went_down:
        raise MetricsError(
            f"counters went down ({', '.join(went_down)}): the arm restarted between two readings"
        )
    requests = round(after.requests - before.requests)
    errors = round(after.errors - before.errors)
    if errors > requests:
        raise MetricsError(f"{errors} errors but {requests} requests in one interval")
    if any(not math.isfinite(v) for v in latencies_ms):
        raise MetricsError("a NaN or infinite latency in /v1/recent-predictions")
    classes = {k: max(0, round(v - before.classes.get(k, 0.0))) for k, v in after.classes.items()}
    return ArmWindow(
        requests=requests,
        errors=errors,
        latencies_ms=tuple(latencies_ms),
        latency_buckets=_delta_buckets(before.latency_buckets, after.latency_buckets),
        classes={k: v for k, v in classes.items() if v},
        score_buckets=_delta_buckets(before.score_buckets, after.score_buckets),
    )


@dataclass(frozen=True)
class Recent:
    """One entry of /v1/recent-predictions."""

    request_id: str
    predictions: tuple[Any, ...]
    status: int
    latency_ms: float | None


def parse_recent(payload: Any) -> list[Recent]:
    if not isinstance(payload, dict) or not isinstance(payload.get("predictions"), list):
        raise MetricsError('/v1/recent-predictions did not return {"predictions": [...]}')
    out: list[Recent] = []
    for item in payload["predictions"]:
        if not isinstance(item, dict) or not item.get("request_id"):
            continue
        preds = item.get("predictions")
        latency = item.get("latency_ms")
        try:
            status = int(item.get("status", 200))
        except (TypeError, ValueError):
            status = 0
        out.append(
            Recent(
                request_id=str(item["request_id"]),
                predictions=tuple(preds) if isinstance(preds, list) else (preds,),
                status=status,
                latency_ms=float(latency) if isinstance(latency, int | float) else None,
            )
        )
    return out


def pair_predictions(
    stable: Iterable[Recent], shadow: Iterable[Recent], already: set[str]
) -> list[tuple[Any, Any]]:
    """(stable, shadow) prediction pairs of successful requests both arms answered.

    `already` holds the request ids paired before; new ids are added to it.
    """
    by_id = {r.request_id: r for r in shadow if 200 <= r.status < 300}
    pairs: list[tuple[Any, Any]] = []
    for r in stable:
        if r.request_id in already or not 200 <= r.status < 300:
            continue
        other = by_id.get(r.request_id)
        if other is None:
            continue
        already.add(r.request_id)
        pairs.extend(zip(r.predictions, other.predictions, strict=False))
    return pairs


def common_windows(
    stable: Iterable[Recent], candidate: Iterable[Recent], used: set[str]
) -> tuple[ArmWindow, ArmWindow]:
    """Windows of both arms built from the same requests only (ids both answered).

    A blue/green preview gets synthetic requests only while the active version also serves
    clients: comparing all their traffic would compare different inputs. Built from the
    requests both arms answered (same X-Request-ID), the comparison is like for like.
    `used` holds the ids counted before; new ones are added to it.
    """
    by_id = {r.request_id: r for r in candidate}
    pairs = [
        (r, by_id[r.request_id])
        for r in stable
        if r.request_id in by_id and r.request_id not in used
    ]
    used.update(r.request_id for r, _ in pairs)

    def build(entries: list[Recent]) -> ArmWindow:
        classes: dict[str, int] = {}
        for entry in entries:
            if 200 <= entry.status < 300:
                for value in entry.predictions:
                    if isinstance(value, str | int | bool):
                        classes[str(value)] = classes.get(str(value), 0) + 1
        return ArmWindow(
            requests=len(entries),
            errors=sum(1 for e in entries if e.status >= 500),
            latencies_ms=tuple(
                e.latency_ms for e in entries if e.latency_ms is not None and 200 <= e.status < 300
            ),
            classes=classes,
        )

    return build([a for a, _ in pairs]), build([b for _, b in pairs])


_Buckets = tuple[tuple[float, int], ...]


def alike_predictions(
    stable: ArmWindow,
    canary: ArmWindow,
    stable_recent: Iterable[Recent],
    canary_recent: Iterable[Recent],
    used: set[str],
    *,
    regression: bool = False,
) -> tuple[ArmWindow, ArmWindow, int]:
    """The arms' windows with their predictions taken from the same requests only.

    With a sticky key the canary answers a cohort of users whose inputs need not look like
    stable's users' (a few heavy users, each with rows of their own), so the arms' own
    prediction counters differ even between two copies of one model. The router copies
    each request the canary answers to stable (same X-Request-ID): the requests both
    answered give each model's predictions on the same inputs, which is what the
    prediction checks compare (classes; numbers, for regression, over the arm's score
    buckets). Requests, errors and latency stay the arms' own. `used` holds the ids
    counted before; new ones are added to it. Returns the windows and the pairs' count.
    """
    by_id = {r.request_id: r for r in canary_recent if 200 <= r.status < 300}
    pairs = [
        (r, by_id[r.request_id])
        for r in stable_recent
        if 200 <= r.status < 300 and r.request_id in by_id and r.request_id not in used
    ]
    used.update(r.request_id for r, _ in pairs)
    bounds = [b for b, _ in (stable.score_buckets or canary.score_buckets) if math.isfinite(b)]

    def predictions(entries: Iterable[Recent]) -> tuple[dict[str, int], _Buckets]:
        classes: dict[str, int] = {}
        numbers: list[float] = []
        for entry in entries:
            for value in entry.predictions:
                if regression:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        numbers.append(float(value))
                elif isinstance(value, str | int | float | bool):
                    classes[str(value)] = classes.get(str(value), 0) + 1
        if not bounds or not numbers:
            return classes, ()
        numbers.sort()
        buckets = [(b, bisect.bisect_right(numbers, b)) for b in bounds]
        return classes, (*buckets, (math.inf, len(numbers)))

    stable_classes, stable_scores = predictions(a for a, _ in pairs)
    canary_classes, canary_scores = predictions(b for _, b in pairs)
    return (
        replace(stable, classes=stable_classes, score_buckets=stable_scores),
        replace(canary, classes=canary_classes, score_buckets=canary_scores),
        len(pairs),
    )


# --------------------------------------------------------------------------------------
# HTTP to the arms (127.0.0.1 only)


def http_get(port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise MetricsError(f"GET 127.0.0.1:{port}{path}: {exc}") from exc
    finally:
        conn.close()


class ArmReader:
    """Reads one arm's counters and recent predictions, remembering what it has seen."""

    def __init__(self, port: int, *, recent_limit: int = 1000) -> None:
        self.port = port
        self.recent_limit = recent_limit
        self.last: Snapshot | None = None
        self.seen: set[str] = set()

    def read_snapshot(self) -> Snapshot:
        status, body = http_get(self.port, "/metrics")
        if status != 200:
            raise MetricsError(f"GET /metrics on 127.0.0.1:{self.port} answered {status}")
        return snapshot(parse_prometheus(body.decode("utf-8", "replace")))

    def read_recent(self, limit: int | None = None) -> list[Recent]:
        wanted = self.recent_limit if limit is None else min(limit, self.recent_limit)
        status, body = http_get(self.port, f"/v1/recent-predictions?limit={wanted}")
        if status != 200:
            raise MetricsError(
                f"GET /v1/recent-predictions on 127.0.0.1:{self.port} answered {status}"
            )
        try:
            return parse_recent(json.loads(body))
        except json.JSONDecodeError as exc:
            raise MetricsError(f"/v1/recent-predictions is not JSON: {exc}") from exc

    def start(self) -> None:
        """The baseline reading at the start of an interval."""
        self.last = self.read_snapshot()
        self.seen = {r.request_id for r in self.read_recent()}

    def interval(self) -> tuple[ArmWindow, list[Recent]]:
        """What the arm did since the last reading, and every recent prediction it lists."""
        current = self.read_snapshot()
        # ask for what the interval can hold (its requests and a margin), not always the
        # maximum: a busy arm's JSON of 1,000 records every interval slows it down
        since = current.requests - (self.last.requests if self.last else 0.0)
        wanted = self.recent_limit if not math.isfinite(since) else int(max(since, 0) * 1.5) + 50
        everything = self.read_recent(wanted)
        recent = [r for r in everything if r.request_id not in self.seen]
        self.seen = {r.request_id for r in everything}
        before = self.last or Snapshot()
        self.last = current
        latencies = [
            r.latency_ms for r in recent if r.latency_ms is not None and 200 <= r.status < 300
        ]
        return window(before, current, latencies), everything

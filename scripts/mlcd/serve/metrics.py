"""Prometheus metrics and the recent-predictions buffer, shared by every worker process.

Both live in anonymous shared memory made before the workers are forked: each worker
writes only its own row (metrics) or ring (recent predictions), and any worker reads them
all, so GET /metrics and GET /v1/recent-predictions answer for the whole server whichever
process takes the request. Writes happen on each worker's event-loop thread only.
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Renard's R40 series: 40 preferred numbers a decade, at most 6.7 % apart, holding 1, 2, 2.5 and
# 5 (so the usual limits such as 50 ms are bucket bounds and the judge tests them exactly).
R40: tuple[float, ...] = (
    1.0, 1.06, 1.12, 1.18, 1.25, 1.32, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.12,
    2.24, 2.36, 2.5, 2.65, 2.8, 3.0, 3.15, 3.35, 3.55, 3.75, 4.0, 4.25, 4.5, 4.75,
    5.0, 5.3, 5.6, 6.0, 6.3, 6.7, 7.1, 7.5, 8.0, 8.5, 9.0, 9.5,
)  # fmt: skip


def _latency_buckets() -> tuple[float, ...]:
    out = [float(f"{m * 10.0**e:.6g}") for e in range(-4, 1) for m in R40]
    return (*out, 10.0)


# Request latency buckets, seconds: 0.1 ms to 10 s, R40 (fine enough for the judge's
# confidence bounds on latency quantiles against a 20 % tolerance; docs/deploy.md).
LATENCY_BUCKETS: tuple[float, ...] = _latency_buckets()
SCORE_BUCKETS_PROBA: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(1, 21))
STATUSES: tuple[int, ...] = (200, 400, 404, 405, 408, 411, 413, 415, 422, 431, 500, 503)
OTHER_STATUS = "other"


def regression_buckets(low: float | None, high: float | None) -> tuple[float, ...]:
    """20 equal buckets over the target's range, or a symmetric log scale without one."""
    if (
        low is not None
        and high is not None
        and math.isfinite(low)
        and math.isfinite(high)
        and (high > low)
    ):
        step = (high - low) / 20
        return tuple(float(f"{low + step * i:.6g}") for i in range(1, 21))
    scale = [10.0**e for e in range(-3, 7)]
    return tuple([-v for v in reversed(scale)] + [0.0] + scale)


class Layout:
    """Where each series lives in a worker's row of counters."""

    def __init__(
        self,
        routes: Sequence[str],
        classes: Sequence[Any],
        score_buckets: Sequence[float],
        category_features: Sequence[str] = (),
    ) -> None:
        self.routes = list(routes)
        self.classes = list(classes)
        self.score_buckets = list(score_buckets)
        self.statuses = [*map(str, STATUSES), OTHER_STATUS]
        self.status_index = {s: i for i, s in enumerate(STATUSES)}
        n_routes, n_status, n_lat = len(self.routes), len(self.statuses), len(LATENCY_BUCKETS) + 1
        self.route_index = {r: i for i, r in enumerate(self.routes)}
        self.req_base = 0
        self.lat_base = self.req_base + n_routes * n_status
        self.lat_stride = n_lat + 2  # buckets (+Inf), sum, count
        self.class_base = self.lat_base + n_routes * self.lat_stride
        self.score_base = self.class_base + len(self.classes)
        self.score_stride = len(self.score_buckets) + 1 + 2
        self.category_features = list(category_features)
        self.unknown_base = self.score_base + self.score_stride
        self.size = self.unknown_base + len(self.category_features)
        self.n_status = n_status


class Metrics:
    """One worker's view of the shared counters (rows: workers; columns: `Layout`)."""

    def __init__(
        self,
        layout: Layout,
        workers: int,
        *,
        name: str,
        version: str,
        started: float | None = None,
    ) -> None:
        self.layout = layout
        # made before the workers fork: the server's start, which a metric reader compares
        # between two readings to see a restart even when the counters climbed past the last
        self.started = time.time() if started is None else started
        self.workers = workers
        self.model_name = name
        self.model_version = version
        self._mem = mmap.mmap(-1, max(8, workers * layout.size * 8))
        self.table: NDArray[np.float64] = np.frombuffer(self._mem, dtype=np.float64).reshape(
            workers, layout.size
        )
        self.row: NDArray[np.float64] = self.table[0]

    def bind(self, worker: int) -> None:
        """Write to this worker's row from now on (call in the worker after fork)."""
        self.row = self.table[worker]

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        lay = self.layout
        r = lay.route_index.get(route)
        if r is None:
            r = lay.route_index["other"]
        s = lay.status_index.get(status, lay.n_status - 1)
        row = self.row
        row[lay.req_base + r * lay.n_status + s] += 1
        base = lay.lat_base + r * lay.lat_stride
        row[base + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        row[base + len(LATENCY_BUCKETS) + 1] += seconds
        row[base + len(LATENCY_BUCKETS) + 2] += 1

    def observe_predictions(self, labels: Sequence[int], scores: Sequence[float]) -> None:
        lay = self.layout
        row = self.row
        for label in labels:
            row[lay.class_base + label] += 1
        buckets = lay.score_buckets
        nb = len(buckets)
        for score in scores:
            if math.isnan(score):  # NaN: counted, never bucketed
                row[lay.score_base + nb + 2] += 1
                continue
            row[lay.score_base + bisect.bisect_left(buckets, score)] += 1
            row[lay.score_base + nb + 1] += score
            row[lay.score_base + nb + 2] += 1

    def observe_unknown(self, position: int, count: int) -> None:
        """`count` values of the `position`-th category feature that training never saw."""
        self.row[self.layout.unknown_base + position] += count

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) summed over workers."""
        lay = self.layout
        total = self.table.sum(axis=0).tolist()
        out: list[str] = []
        out.append("# HELP mlcd_requests_total Requests answered, by route and status.")
        out.append("# TYPE mlcd_requests_total counter")
        for r, route in enumerate(lay.routes):
            for s, status in enumerate(lay.statuses):
                value = total[lay.req_base + r * lay.n_status + s]
                if value:
                    out.append(
                        f'mlcd_requests_total{{route="{route}",status="{status}"}} {_num(value)}'
                    )
        out.append("# HELP mlcd_request_duration_seconds Time from request to response, seconds.")
        out.append("# TYPE mlcd_request_duration_seconds histogram")
        for r, route in enumerate(lay.routes):
            base = lay.lat_base + r * lay.lat_stride
            count = total[base + len(LATENCY_BUCKETS) + 2]
            if not count:
                continue
            cumulative = 0.0
            for i, le in enumerate((*LATENCY_BUCKETS, math.inf)):
                cumulative += total[base + i]
                out.append(
                    f'mlcd_request_duration_seconds_bucket{{route="{route}",le="{_le(le)}"}} '
                    f"{_num(cumulative)}"
                )
            out.append(
                f'mlcd_request_duration_seconds_sum{{route="{route}"}} '
                f"{total[base + len(LATENCY_BUCKETS) + 1]!r}"
            )
            out.append(f'mlcd_request_duration_seconds_count{{route="{route}"}} {_num(count)}')
        if lay.classes:
            out.append("# HELP mlcd_predictions_total Predicted rows, by predicted class.")
            out.append("# TYPE mlcd_predictions_total counter")
            for i, label in enumerate(lay.classes):
                out.append(
                    f'mlcd_predictions_total{{class="{_label(label)}"}} '
                    f"{_num(total[lay.class_base + i])}"
                )
        out.append(
            "# HELP mlcd_prediction_score Positive-class (binary) or top-class probability, "
            "or the predicted value (regression), per predicted row."
        )
        out.append("# TYPE mlcd_prediction_score histogram")
        nb = len(lay.score_buckets)
        cumulative = 0.0
        for i, le in enumerate((*lay.score_buckets, math.inf)):
            cumulative += total[lay.score_base + i]
            out.append(f'mlcd_prediction_score_bucket{{le="{_le(le)}"}} {_num(cumulative)}')
        out.append(f"mlcd_prediction_score_sum {total[lay.score_base + nb + 1]!r}")
        out.append(f"mlcd_prediction_score_count {_num(total[lay.score_base + nb + 2])}")
        if lay.category_features:
            out.append(
                "# HELP mlcd_unknown_category_total Values of a category feature that the "
                "training data did not have (passed to the model), by feature."
            )
            out.append("# TYPE mlcd_unknown_category_total counter")
            for i, feature in enumerate(lay.category_features):
                out.append(
                    f'mlcd_unknown_category_total{{feature="{_label(feature)}"}} '
                    f"{_num(total[lay.unknown_base + i])}"
                )
        out.append("# HELP mlcd_model_info The model this server serves.")
        out.append("# TYPE mlcd_model_info gauge")
        out.append(
            f'mlcd_model_info{{name="{_label(self.model_name)}",'
            f'version="{_label(self.model_version)}"}} 1'
        )
        out.append("# HELP process_start_time_seconds Start time of the server, Unix seconds.")
        out.append("# TYPE process_start_time_seconds gauge")
        out.append(f"process_start_time_seconds {self.started!r}")
        out.append("# HELP mlcd_workers Worker processes serving requests.")
        out.append("# TYPE mlcd_workers gauge")
        out.append(f"mlcd_workers {self.workers}")
        return "\n".join(out) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _le(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_HEADER = struct.Struct("<q")  # records written so far
_LEN = struct.Struct("<I")


class RecentBuffer:
    """The last N answers of /predict and /v2 infer per worker, by request id.

    A ring of fixed-size slots per worker in shared memory. A record that does not fit in
    a slot keeps its request id, status and timing, with `predictions: null` and
    `"truncated": true`.
    """

    SLOT = 1024

    def __init__(self, capacity: int, workers: int) -> None:
        self.capacity = capacity
        self.workers = workers
        self.ring_bytes = _HEADER.size + capacity * self.SLOT
        self._mem = mmap.mmap(-1, max(8, self.ring_bytes * workers))
        self.worker = 0

    def bind(self, worker: int) -> None:
        self.worker = worker

    def add(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, separators=(",", ":"), default=str).encode()
        if len(data) + _LEN.size > self.SLOT:
            slim = dict(record, predictions=None, truncated=True)
            data = json.dumps(slim, separators=(",", ":"), default=str).encode()
            if len(data) + _LEN.size > self.SLOT:
                return
        base = self.worker * self.ring_bytes
        (count,) = _HEADER.unpack_from(self._mem, base)
        slot = base + _HEADER.size + (count % self.capacity) * self.SLOT
        _LEN.pack_into(self._mem, slot, 0)
        self._mem[slot + _LEN.size : slot + _LEN.size + len(data)] = data
        _LEN.pack_into(self._mem, slot, len(data))
        _HEADER.pack_into(self._mem, base, count + 1)

    def recent(self, limit: int, since: float | None = None) -> list[dict[str, Any]]:
        """Up to `limit` newest records of all workers, oldest first."""
        found: list[dict[str, Any]] = []
        for worker in range(self.workers):
            base = worker * self.ring_bytes
            (count,) = _HEADER.unpack_from(self._mem, base)
            for seq in range(count - 1, max(-1, count - 1 - min(limit, self.capacity)), -1):
                slot = base + _HEADER.size + (seq % self.capacity) * self.SLOT
                (length,) = _LEN.unpack_from(self._mem, slot)
                if not 0 < length <= self.SLOT - _LEN.size:
                    continue
                try:
                    record = json.loads(self._mem[slot + _LEN.size : slot + _LEN.size + length])
                except ValueError:  # being overwritten right now
                    continue
                if since is not None and record.get("time", 0) <= since:
                    break
                found.append(record)
        found.sort(key=lambda r: r.get("time", 0))
        return found[-limit:] if limit else []

"""`mlcd judge` against Prometheus (mlcd/rollout/watch.py), with a fake query function that
answers like Prometheus' HTTP API does: per-pod series of the counters the server exports."""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from mlcd.errors import UserInputError
from mlcd.rollout import watch
from mlcd.rollout.judge import AnalysisRun, Limits, StepPolicy
from mlcd.tools import prometheus

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, math.inf)


class FakePrometheus:
    """Two pods per arm whose counters grow by a fixed amount per reading."""

    def __init__(self, canary_errors: float, stable_errors: float = 0.005) -> None:
        self.reads: dict[str, int] = {"canary": 0, "stable": 0}
        self.rates = {"canary": canary_errors, "stable": stable_errors}
        self.queries: list[str] = []
        self.restart_canary_at: int | None = None

    def __call__(self, address: str, promql: str) -> Sequence[prometheus.Series]:
        assert address == "http://prom:9090"
        self.queries.append(promql)
        assert promql.startswith('{__name__=~"mlcd_requests_total|')
        arm = "canary" if 'hash="c"' in promql else "stable"
        self.reads[arm] += 1
        k = self.reads[arm]
        if arm == "canary" and self.restart_canary_at is not None and k >= self.restart_canary_at:
            k -= self.restart_canary_at - 1  # a fresh process: counters start again
        out: list[prometheus.Series] = []
        for pod in ("a", "b"):
            n = 500.0 * k
            errors = round(n * self.rates[arm])
            base = {"pod": pod, "route": "/predict"}
            out.append(({"__name__": "mlcd_requests_total", **base, "status": "200"}, n - errors))
            out.append(({"__name__": "mlcd_requests_total", **base, "status": "500"}, errors))
            for le in BUCKETS:
                share = 1.0 if math.isinf(le) else min(1.0, le / 0.02)
                labels = {"__name__": "mlcd_request_duration_seconds_bucket", **base}
                out.append(({**labels, "le": "+Inf" if math.isinf(le) else str(le)}, n * share))
            out.append(({"__name__": "mlcd_predictions_total", "pod": pod, "class": "1"}, n * 0.4))
            out.append(({"__name__": "mlcd_predictions_total", "pod": pod, "class": "0"}, n * 0.6))
        return out


def _analyse(
    fake: FakePrometheus, policy: StepPolicy, limits: Limits | None = None
) -> tuple[str, str, list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    stable = watch.PrometheusArm("http://prom:9090", 'rollouts_pod_template_hash="s"', fake)
    canary = watch.PrometheusArm("http://prom:9090", 'rollouts_pod_template_hash="c"', fake)
    action, why = watch.analyse(
        stable,
        canary,
        limits=limits or Limits(min_requests=200, max_p99_latency_ms=500),
        policy=policy,
        run=AnalysisRun(inconclusive_limit=None),
        interval=30.0,
        emit=lines.append,
        sleep=lambda _s: None,
        clock=lambda: 0.0,
    )
    return action, why, lines


def test_a_canary_with_five_percent_errors_fails() -> None:
    action, why, lines = _analyse(FakePrometheus(0.05), StepPolicy(2, 10))
    assert action == "failed"
    assert "error rate" in lines[-1]["reasons"][0]
    assert lines[-1]["metrics"]["canary_requests"] % 1000 == 0  # both pods summed
    assert "failed measurement" in why


def test_too_little_evidence_extends_then_pauses() -> None:
    # an error-rate tolerance of 0.05 points cannot be shown with a few thousand requests
    tight = Limits(min_requests=200, max_p99_latency_ms=500, max_error_rate_increase=0.0005)
    action, why, lines = _analyse(FakePrometheus(0.005), StepPolicy(2, 3), tight)
    assert action == "paused"
    assert "max-intervals 3" in why
    assert len(lines) == 3
    assert all(line["outcome"] == "inconclusive" for line in lines)


def test_a_good_canary_passes() -> None:
    action, _why, lines = _analyse(FakePrometheus(0.005), StepPolicy(2, 10))
    assert action == "pass"
    assert lines[-1]["outcome"] == "pass"


def test_a_restarted_canary_is_an_error_reading() -> None:
    fake = FakePrometheus(0.005)
    fake.restart_canary_at = 3
    _action, _why, lines = _analyse(fake, StepPolicy(2, 4))
    outcomes = [line["outcome"] for line in lines]
    assert "error" in outcomes
    assert "went down" in lines[outcomes.index("error")]["reasons"][0]


def test_unreachable_prometheus_is_an_error_reading() -> None:
    def down(_address: str, _promql: str) -> Sequence[prometheus.Series]:
        raise prometheus.QueryError("GET http://prom:9090/api/v1/query: connection refused")

    lines: list[dict[str, Any]] = []
    arm = watch.PrometheusArm("http://prom:9090", 'a="b"', down)
    action, why = watch.analyse(
        arm,
        arm,
        limits=Limits(),
        policy=StepPolicy(1, 30),
        run=AnalysisRun(consecutive_error_limit=2, inconclusive_limit=None),
        interval=1.0,
        emit=lines.append,
        sleep=lambda _s: None,
        clock=lambda: 0.0,
    )
    assert action == "failed"
    assert "in a row" in why
    assert [line["outcome"] for line in lines if line["outcome"] == "error"] == ["error"] * 3


def test_parse_vector_and_refusals() -> None:
    body = json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {"__name__": "x", "a": "1"}, "value": [1.0, "2.5"]}],
            },
        }
    )
    assert prometheus.parse_vector(body) == [({"__name__": "x", "a": "1"}, 2.5)]
    with pytest.raises(prometheus.QueryError, match="refused"):
        prometheus.parse_vector(json.dumps({"status": "error", "error": "parse error"}))
    with pytest.raises(prometheus.QueryError, match="not JSON"):
        prometheus.parse_vector("<html>")
    with pytest.raises(prometheus.QueryError, match="http"):
        prometheus.query("file:///etc/passwd", "up")


def test_arguments_are_checked() -> None:
    with pytest.raises(UserInputError, match="unknown key"):
        watch.limits_from('{"max-eror-rate": 0.1}', 100)
    with pytest.raises(UserInputError, match="not JSON"):
        watch.limits_from("{", 100)
    with pytest.raises(UserInputError, match="quantile"):
        watch.limits_from('{"quantiles": {"median": 0.2}}', 100)
    limits, run = watch.limits_from('{"alpha": 0.01, "failure-limit": 1}', 100)
    assert (limits.alpha, run.failure_limit, limits.min_requests) == (0.01, 1, 100)
    assert watch.parse_duration("500ms") == 0.5
    assert watch.parse_duration("2m") == 120.0
    with pytest.raises(UserInputError, match="duration"):
        watch.parse_duration("soon")
    parser = argparse.ArgumentParser()
    watch.add_arguments(parser)
    args = parser.parse_args(
        ["--prometheus", "http://p:9090", "--canary", "not a selector", "--stable", 'a="b"']
    )
    with pytest.raises(UserInputError, match="label matchers"):
        watch.run(args, io.StringIO())

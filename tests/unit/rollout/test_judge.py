"""The judge, with a fake metric provider: decisions, validity under repeated looks, and
analysis-run semantics as in Argo Rollouts."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from mlcd.rollout.judge import (
    AnalysisRun,
    ArmWindow,
    JudgeState,
    Limits,
    error_odds_loglr,
    histogram_quantile,
    homogeneity_p,
    judge,
    mann_whitney_greater,
    mixture,
    psi,
    quantile,
    rate_limit_loglr,
    spent_alpha,
)


@dataclass
class FakeArm:
    error_rate: float = 0.005
    latency_ms: float = 10.0
    positive: float = 0.4


class FakeProvider:
    """Per-interval windows of two arms, drawn from known rates (seeded)."""

    def __init__(self, stable: FakeArm, canary: FakeArm, seed: int = 1) -> None:
        self.stable, self.canary = stable, canary
        self.rng = random.Random(seed)

    def _window(self, arm: FakeArm, n: int) -> ArmWindow:
        errors = sum(self.rng.random() < arm.error_rate for _ in range(n))
        ok = n - errors
        positives = sum(self.rng.random() < arm.positive for _ in range(ok))
        latencies = tuple(self.rng.lognormvariate(math.log(arm.latency_ms), 0.4) for _ in range(n))
        return ArmWindow(
            requests=n,
            errors=errors,
            latencies_ms=latencies,
            classes={"0": ok - positives, "1": positives},
        )

    def interval(self, n_stable: int, n_canary: int) -> tuple[ArmWindow, ArmWindow]:
        return self._window(self.stable, n_stable), self._window(self.canary, n_canary)


LIMITS = Limits(min_requests=100, max_error_rate=0.01, max_p99_latency_ms=100.0)


def run_analysis(
    provider: FakeProvider,
    intervals: int,
    n: int = 100,
    limits: Limits = LIMITS,
    run: AnalysisRun | None = None,
) -> tuple[str, int]:
    """Drive the judge like the controller does; (final phase or 'running', intervals used)."""
    state = JudgeState()
    run = run or AnalysisRun(failure_limit=0, inconclusive_limit=100)
    for i in range(1, intervals + 1):
        stable, canary = provider.interval(n, n)
        state, measurement = judge(state, stable, canary, limits)
        run = run.record(measurement.verdict)
        if run.phase != "running":
            return run.phase, i
    return "running", intervals


def test_identical_arms_rarely_fail_over_200_runs_of_10_looks() -> None:
    rollbacks = sum(
        run_analysis(FakeProvider(FakeArm(), FakeArm(), seed=s), 10)[0] == "failed"
        for s in range(200)
    )
    assert rollbacks / 200 <= 0.05


def test_five_percent_errors_against_half_a_percent_fails_within_two_intervals_of_min() -> None:
    limits = Limits(min_requests=200, max_error_rate=0.01, max_p99_latency_ms=100.0)
    for seed in range(20):
        provider = FakeProvider(FakeArm(), FakeArm(error_rate=0.05), seed)
        phase, used = run_analysis(provider, 20, n=200, limits=limits)
        assert phase == "failed"
        assert used <= 3  # min-requests (200) is reached at the first interval


def test_slower_canary_fails_on_latency_with_tolerance_respected() -> None:
    slow = run_analysis(FakeProvider(FakeArm(), FakeArm(latency_ms=20.0), 3), 10)
    assert slow[0] == "failed"
    within = run_analysis(FakeProvider(FakeArm(), FakeArm(latency_ms=10.5), 3), 10)
    assert within[0] == "running"  # 5 % slower is inside the 20 % tolerance


def test_prediction_shift_fails() -> None:
    assert run_analysis(FakeProvider(FakeArm(), FakeArm(positive=0.8), 4), 10)[0] == "failed"


def test_too_few_requests_is_inconclusive_never_pass() -> None:
    provider = FakeProvider(FakeArm(error_rate=0.0), FakeArm(error_rate=0.0), 5)
    state = JudgeState()
    for _ in range(5):
        stable, canary = provider.interval(20, 10)
        state, m = judge(state, stable, canary, Limits(min_requests=100))
        assert m.verdict == "inconclusive"
        assert "too little traffic" in m.reasons[0]
    stable, canary = provider.interval(200, 60)
    state, m = judge(state, stable, canary, Limits(min_requests=100))
    assert m.verdict == "pass"  # 110 requests in the step now


def test_new_step_counts_min_requests_again() -> None:
    provider = FakeProvider(FakeArm(error_rate=0.0), FakeArm(error_rate=0.0), 6)
    state, m = judge(JudgeState(), *provider.interval(200, 200), Limits(min_requests=100))
    assert m.verdict == "pass"
    state, m = judge(state.new_step(), *provider.interval(50, 50), Limits(min_requests=100))
    assert m.verdict == "inconclusive"


def test_zero_traffic_is_inconclusive() -> None:
    _, m = judge(JudgeState(), ArmWindow(), ArmWindow(), LIMITS)
    assert m.verdict == "inconclusive"


def test_absolute_p99_limit() -> None:
    canary = ArmWindow(requests=200, latencies_ms=tuple([5.0] * 190 + [500.0] * 10))
    stable = ArmWindow(requests=200, latencies_ms=tuple([5.0] * 190 + [500.0] * 10))
    _, m = judge(JudgeState(), stable, canary, Limits(min_requests=100, max_p99_latency_ms=50))
    assert m.verdict == "fail"
    assert any("p99" in r for r in m.reasons)


def test_p99_from_histogram_when_no_samples() -> None:
    buckets = ((0.01, 150), (0.1, 195), (1.0, 200), (math.inf, 200))
    canary = ArmWindow(requests=200, latency_buckets=buckets)
    _, m = judge(
        JudgeState(),
        ArmWindow(requests=200),
        canary,
        Limits(min_requests=100, max_p99_latency_ms=50),
    )
    assert m.verdict == "fail"
    assert m.metrics["canary_p99_ms"] == pytest.approx(640.0)  # 0.1 + 0.9 * 3/5 s


def test_shadow_pairs_disagreement() -> None:
    limits = Limits(min_requests=10, max_disagreement=0.05)
    same = [(1, 1)] * 20
    _, m = judge(JudgeState(), ArmWindow(requests=20), ArmWindow(requests=20), limits, pairs=same)
    assert m.verdict == "pass"
    assert m.metrics["agreement"] == 1.0
    differ = [(1, 1)] * 15 + [(1, 0)] * 5
    _, m = judge(JudgeState(), ArmWindow(requests=20), ArmWindow(requests=20), limits, pairs=differ)
    assert m.verdict == "fail"
    assert "disagrees" in m.reasons[0]
    few = [(1, 0)] * 5
    _, m = judge(JudgeState(), ArmWindow(requests=20), ArmWindow(requests=20), limits, pairs=few)
    assert m.verdict == "inconclusive"  # too few pairs to judge


def test_shadow_regression_mean_abs_diff() -> None:
    limits = Limits(min_requests=4, max_mean_abs_diff=0.5)
    _, m = judge(
        JudgeState(),
        ArmWindow(requests=4),
        ArmWindow(requests=4),
        limits,
        pairs=[(1.0, 1.1), (2.0, 2.2), (3.0, 3.0), (4.0, 4.1)],
    )
    assert m.verdict == "pass"
    assert m.metrics["mean_abs_diff"] == pytest.approx(0.1)
    _, m = judge(
        JudgeState(), ArmWindow(requests=4), ArmWindow(requests=4), limits, pairs=[(1.0, 3.0)] * 4
    )
    assert m.verdict == "fail"


# ---------------------------------------------------------------------- primitives


def test_error_odds_loglr_is_zero_without_errors_and_signs() -> None:
    assert error_odds_loglr(100, 0, 100, 0, 3.0) == 0.0
    assert error_odds_loglr(100, 5, 100, 0, 3.0) > 0
    assert error_odds_loglr(100, 0, 100, 5, 3.0) < 0


def test_error_odds_likelihood_ratio_has_mean_one_under_the_null() -> None:
    # E[LR] = 1 under equal rates: sum over the hypergeometric law of the split
    n_c, n_s, total = 30, 70, 6
    log_c = [
        math.lgamma(n_c + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n_c - k + 1)
        + math.lgamma(n_s + 1)
        - math.lgamma(total - k + 1)
        - math.lgamma(n_s - total + k + 1)
        for k in range(total + 1)
    ]
    z = sum(math.exp(v) for v in log_c)
    mean = sum(
        math.exp(v) / z * math.exp(error_odds_loglr(n_c, k, n_s, total - k, 4.0))
        for k, v in enumerate(log_c)
    )
    assert mean == pytest.approx(1.0)


def test_rate_limit_loglr() -> None:
    assert rate_limit_loglr(0, 0, 0.01, 0.02) == 0.0
    assert rate_limit_loglr(100, 10, 0.01, 0.05) > math.log(20)
    assert rate_limit_loglr(100, 0, 0.01, 0.05) < 0


def test_mixture_and_spending() -> None:
    assert mixture([0.0, 0.0]) == pytest.approx(0.0)
    assert mixture([math.log(4), 0.0]) == pytest.approx(math.log(2.5))
    assert sum(spent_alpha(0.05, k) for k in range(1, 100000)) < 0.05


def test_mann_whitney_psi_chi2_quantiles() -> None:
    assert mann_whitney_greater([10.0] * 50, [1.0] * 50) < 1e-6
    assert mann_whitney_greater([1.0] * 50, [10.0] * 50) > 0.99
    assert mann_whitney_greater([], [1.0]) == 1.0
    assert psi([50, 50], [50, 50]) == pytest.approx(0.0)
    assert psi([50, 50], [90, 10]) > 0.5
    assert psi([0, 0], [1, 1]) == 0.0
    assert homogeneity_p([500, 500], [900, 100]) < 1e-6
    assert homogeneity_p([5, 0], [5, 0]) == 1.0
    assert quantile([], 0.5) is None
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert histogram_quantile(0.5, ((1.0, 0), (2.0, 0))) is None
    assert histogram_quantile(0.5, ((1.0, 10), (math.inf, 10))) == pytest.approx(0.5)


# ---------------------------------------------------------------------- analysis runs


def test_failure_limit_counts_failures() -> None:
    run = AnalysisRun(failure_limit=1)
    run = run.record("fail")
    assert run.phase == "running"
    run = run.record("pass").record("fail")
    assert run.phase == "failed"
    assert "2 failed" in run.explain()


def test_inconclusive_limit_pauses() -> None:
    run = AnalysisRun(inconclusive_limit=2)
    run = run.record("inconclusive").record("inconclusive")
    assert run.phase == "running"
    assert run.record("inconclusive").phase == "inconclusive"


def test_consecutive_errors_reset_by_a_measurement() -> None:
    run = AnalysisRun(consecutive_error_limit=2)
    run = run.record("error").record("error").record("pass").record("error").record("error")
    assert run.phase == "running"
    assert run.errors == 4
    assert run.record("error").phase == "error"
    assert "in a row" in run.record("error").explain()


def test_sub_millisecond_latency_differences_never_fail() -> None:
    # a freshly started container at 0.07 ms against a warm one at 0.05 ms: 40 % slower, but
    # far below the 1 ms floor
    canary = ArmWindow(requests=300, latencies_ms=tuple([0.07] * 300))
    stable = ArmWindow(requests=300, latencies_ms=tuple([0.05] * 300))
    _, m = judge(JudgeState(), stable, canary, Limits(min_requests=100))
    assert m.verdict == "pass"
    _, m = judge(
        JudgeState(), stable, canary, Limits(min_requests=100, min_latency_increase_ms=0.0)
    )
    assert m.verdict == "fail"

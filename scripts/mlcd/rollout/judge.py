"""The judge: pure functions that decide pass, fail or inconclusive for one analysis interval.

Each interval the controller hands the judge what each arm (stable and canary, or stable and
shadow) did during that interval (`ArmWindow`: requests, server errors, latencies, predicted
classes or scores). The judge keeps what it needs across intervals in a `JudgeState` and
returns a `Measurement`. Nothing here reads a clock, a socket or a file, so every decision can
be replayed and tested with a fake metric provider.

The tests, and why they keep the false-rollback rate under `alpha` although they are looked at
after every interval (the share of `alpha` each gets is in `ALPHA_SHARES`):

- **error rate, canary against stable** — a mixture sequential probability ratio test on the
  odds ratio of an error on the canary. Given the errors seen in an interval, their split
  between the arms is (Fisher's noncentral) hypergeometric with odds ratio 1 under "the canary
  is no worse"; the product of the per-interval likelihood ratios, mixed over a grid of odds
  ratios, is a nonnegative martingale under that hypothesis, so by Ville's inequality it
  crosses ``1/alpha`` with probability at most ``alpha`` however often it is checked.
- **error rate, absolute** — the same kind of mixture test of "canary error rate ≤
  `max-error-rate`" (a supermartingale under that hypothesis), so the absolute limit fails on
  evidence, not on two unlucky requests.
- **latency** — a one-sided Mann-Whitney rank test of the canary's latencies against the
  stable's latencies scaled by ``1 + max-latency-increase`` plus ``min-latency-increase-ms``
  (the effect-size tolerance, in the spirit of Kayenta's judge; the floor keeps a cold
  container's tens of microseconds from failing a release); its level at the k-th look is
  ``a·6/(π²k²)`` (the levels sum to ``a``), so repeated looks stay valid; plus the absolute
  p99 limit.
- **predictions** — the population stability index between the arms' predicted classes (or
  score histograms for regression); a shift fails only when the PSI is over
  `max-prediction-shift` *and* a chi-square test of homogeneity is significant at the spent
  level, so small samples cannot fail it by noise.
- **shadow** — predictions paired by request id: the disagreement rate (classification) or
  the mean absolute difference (regression) against `shadow.max-disagreement` /
  `shadow.max-mean-abs-diff`.

Too few canary requests in the current step gives *inconclusive*, never *pass*; strong
evidence of a regression may fail a step before it has `min-requests`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

Verdict = Literal["pass", "fail", "inconclusive"]
Outcome = Literal["pass", "fail", "inconclusive", "error"]
Phase = Literal["running", "successful", "failed", "inconclusive", "error"]

# Odds ratios (canary error odds over stable error odds) the mixture is spread over, equal
# weights. Spanning 1.5x to 30x keeps power against both mild and gross regressions.
ERROR_ODDS_GRID: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0)
# Multiples of the absolute error limit the absolute test mixes over.
RATE_GRID: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# How `alpha` is split between the tests (a union bound keeps the total at most `alpha`).
ALPHA_SHARES: Mapping[str, float] = {
    "errors": 0.4,
    "error_limit": 0.2,
    "latency": 0.2,
    "predictions": 0.2,
}
MAX_SAMPLES = 4000
_PSI_EPS = 1e-4


# --------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class ArmWindow:
    """What one arm did during one interval (differences of two metric snapshots)."""

    requests: int = 0
    errors: int = 0
    latencies_ms: tuple[float, ...] = ()
    latency_buckets: tuple[tuple[float, int], ...] = ()  # (upper bound s, cumulative count)
    classes: Mapping[str, int] = field(default_factory=dict)
    score_buckets: tuple[tuple[float, int], ...] = ()  # (upper bound, cumulative count)


@dataclass(frozen=True)
class Limits:
    """The judge's settings: the environment's `analysis` section and its min-requests."""

    min_requests: int = 200
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 50.0
    max_prediction_shift: float = 0.1
    max_latency_increase: float = 0.2
    min_latency_increase_ms: float = 1.0
    alpha: float = 0.05
    max_disagreement: float = 0.05
    max_mean_abs_diff: float | None = None


@dataclass(frozen=True)
class Measurement:
    """The judge's answer for one interval."""

    verdict: Verdict
    reasons: tuple[str, ...]
    metrics: Mapping[str, float | int | None]


@dataclass(frozen=True)
class JudgeState:
    """What the judge carries from one interval to the next."""

    error_loglr: tuple[float, ...] = tuple(0.0 for _ in ERROR_ODDS_GRID)
    limit_loglr: tuple[float, ...] = tuple(0.0 for _ in RATE_GRID)
    latency_looks: int = 0
    prediction_looks: int = 0
    intervals: int = 0
    step_requests: int = 0
    canary_requests: int = 0
    canary_errors: int = 0
    stable_requests: int = 0
    stable_errors: int = 0
    canary_latencies: tuple[float, ...] = ()
    stable_latencies: tuple[float, ...] = ()
    canary_buckets: tuple[tuple[float, int], ...] = ()
    canary_classes: Mapping[str, int] = field(default_factory=dict)
    stable_classes: Mapping[str, int] = field(default_factory=dict)
    canary_scores: tuple[tuple[float, int], ...] = ()
    stable_scores: tuple[tuple[float, int], ...] = ()
    pairs: int = 0
    disagreements: int = 0
    abs_diff_sum: float = 0.0

    def new_step(self) -> JudgeState:
        """A new canary step: min-requests counts again; the evidence is kept."""
        return replace(self, step_requests=0)


# --------------------------------------------------------------------------------------
# Statistical primitives


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def error_odds_loglr(
    n_canary: int, x_canary: int, n_stable: int, x_stable: int, odds: float
) -> float:
    """Log likelihood ratio of odds ratio `odds` against 1 for one interval's errors.

    Conditional on the interval's total errors, the canary's share follows Fisher's noncentral
    hypergeometric law; with odds ratio 1 it is the central hypergeometric (equal error rates).
    """
    total = x_canary + x_stable
    if total == 0 or n_canary <= 0 or n_stable <= 0:
        return 0.0
    low, high = max(0, total - n_stable), min(total, n_canary)
    base = [_log_comb(n_canary, k) + _log_comb(n_stable, total - k) for k in range(low, high + 1)]
    log_odds = math.log(odds)
    shifted = [b + k * log_odds for b, k in zip(base, range(low, high + 1), strict=True)]
    return x_canary * log_odds - (_logsumexp(shifted) - _logsumexp(base))


def rate_limit_loglr(n: int, x: int, p0: float, p1: float) -> float:
    """Log likelihood ratio of error rate p1 against p0 for x errors in n requests."""
    if n <= 0:
        return 0.0
    if p0 <= 0.0:
        return math.inf if x > 0 else n * math.log1p(-p1)
    return x * math.log(p1 / p0) + (n - x) * (math.log1p(-p1) - math.log1p(-p0))


def mixture(loglrs: Sequence[float]) -> float:
    """The equal-weight mixture of likelihood ratios, on the log scale."""
    return _logsumexp(loglrs) - math.log(len(loglrs))


def spent_alpha(alpha: float, look: int) -> float:
    """The level of the look-th look (1-based) so that the levels of all looks sum to alpha."""
    return alpha * 6.0 / (math.pi**2 * look**2)


def mann_whitney_greater(canary: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided p-value that the canary's values are stochastically larger than reference."""
    if not canary or not reference:
        return 1.0
    from scipy import stats  # imported when first needed: it takes most of a second

    result = stats.mannwhitneyu(
        list(canary), list(reference), alternative="greater", method="asymptotic"
    )
    p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two count vectors over the same categories."""
    total_e, total_a = sum(expected), sum(actual)
    if total_e <= 0 or total_a <= 0:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = max(e / total_e, _PSI_EPS)
        pa = max(a / total_a, _PSI_EPS)
        value += (pa - pe) * math.log(pa / pe)
    return value


def homogeneity_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Chi-square test that two count vectors come from one distribution (p-value)."""
    keep = [(x, y) for x, y in zip(a, b, strict=True) if x + y > 0]
    if len(keep) < 2 or sum(x for x, _ in keep) == 0 or sum(y for _, y in keep) == 0:
        return 1.0
    table = [[x for x, _ in keep], [y for _, y in keep]]
    from scipy import stats

    result = stats.chi2_contingency(table, correction=False)
    return float(result.pvalue)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile of values (linear interpolation), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, int]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    finite = sorted(buckets)
    if not finite or finite[-1][1] <= 0:
        return None
    total = finite[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0
    for bound, count in finite:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def add_buckets(
    a: Sequence[tuple[float, int]], b: Sequence[tuple[float, int]]
) -> tuple[tuple[float, int], ...]:
    """Sum two cumulative histograms (bucket bounds are matched by value)."""
    merged: dict[float, int] = dict(a)
    for bound, count in b:
        merged[bound] = merged.get(bound, 0) + count
    return tuple(sorted(merged.items()))


def bucket_counts(buckets: Sequence[tuple[float, int]]) -> list[float]:
    """Per-bin counts from cumulative buckets."""
    out: list[float] = []
    prev = 0
    for _, count in sorted(buckets):
        out.append(float(max(count - prev, 0)))
        prev = count
    return out


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _tail(values: tuple[float, ...], more: Sequence[float]) -> tuple[float, ...]:
    joined = values + tuple(more)
    return joined[-MAX_SAMPLES:]


# --------------------------------------------------------------------------------------
# The judge


def _fmt_rate(x: int, n: int) -> str:
    return f"{x}/{n} ({(x / n if n else 0.0):.2%})"


def judge(
    state: JudgeState,
    stable: ArmWindow,
    canary: ArmWindow,
    limits: Limits,
    *,
    pairs: Sequence[tuple[float | str, float | str]] | None = None,
) -> tuple[JudgeState, Measurement]:
    """Judge one interval of canary (or shadow) against stable.

    `pairs` (shadow mode) holds (stable prediction, shadow prediction) of requests matched by
    request id; when given, the paired agreement replaces the distribution comparison.
    """
    reasons: list[str] = []
    failures: list[str] = []
    metrics: dict[str, float | int | None] = {}

    # accumulate
    s = replace(
        state,
        intervals=state.intervals + 1,
        step_requests=state.step_requests + canary.requests,
        canary_requests=state.canary_requests + canary.requests,
        canary_errors=state.canary_errors + canary.errors,
        stable_requests=state.stable_requests + stable.requests,
        stable_errors=state.stable_errors + stable.errors,
        canary_latencies=_tail(state.canary_latencies, canary.latencies_ms),
        stable_latencies=_tail(state.stable_latencies, stable.latencies_ms),
        canary_buckets=add_buckets(state.canary_buckets, canary.latency_buckets),
        canary_classes=_add_counts(state.canary_classes, canary.classes),
        stable_classes=_add_counts(state.stable_classes, stable.classes),
        canary_scores=add_buckets(state.canary_scores, canary.score_buckets),
        stable_scores=add_buckets(state.stable_scores, stable.score_buckets),
    )
    metrics.update(
        canary_requests=s.canary_requests,
        canary_errors=s.canary_errors,
        stable_requests=s.stable_requests,
        stable_errors=s.stable_errors,
        step_requests=s.step_requests,
        interval_canary_requests=canary.requests,
        interval_stable_requests=stable.requests,
    )

    # 1. error rate, canary against stable (mixture SPRT on the odds ratio)
    a_err = limits.alpha * ALPHA_SHARES["errors"]
    error_loglr = tuple(
        acc + error_odds_loglr(canary.requests, canary.errors, stable.requests, stable.errors, o)
        for acc, o in zip(s.error_loglr, ERROR_ODDS_GRID, strict=True)
    )
    s = replace(s, error_loglr=error_loglr)
    log_lambda = mixture(error_loglr)
    metrics["errors_log_lr"] = round(log_lambda, 4)
    metrics["errors_p_value"] = round(min(1.0, math.exp(-log_lambda)), 6)
    compare = (
        f"error rate canary {_fmt_rate(s.canary_errors, s.canary_requests)} vs stable "
        f"{_fmt_rate(s.stable_errors, s.stable_requests)}"
    )
    if log_lambda >= math.log(1.0 / a_err):
        failures.append(
            f"{compare}: higher on the canary (sequential test, evidence ratio "
            f"{math.exp(min(log_lambda, 700)):.3g} ≥ {1 / a_err:.3g})"
        )
    else:
        reasons.append(f"{compare}: no evidence the canary is worse")

    # 2. absolute error limit (mixture SPRT of rate ≤ max-error-rate)
    a_lim = limits.alpha * ALPHA_SHARES["error_limit"]
    p0 = limits.max_error_rate
    limit_loglr = tuple(
        acc + rate_limit_loglr(canary.requests, canary.errors, p0, min(p0 * m, 0.999))
        if p0 * m < 1.0
        else acc
        for acc, m in zip(s.limit_loglr, RATE_GRID, strict=True)
    )
    s = replace(s, limit_loglr=limit_loglr)
    log_limit = mixture(limit_loglr)
    metrics["error_limit_log_lr"] = round(log_limit, 4) if math.isfinite(log_limit) else 700.0
    if log_limit >= math.log(1.0 / a_lim):
        failures.append(
            f"canary error rate {_fmt_rate(s.canary_errors, s.canary_requests)} is above "
            f"max-error-rate {p0:.2%} (sequential test)"
        )

    enough = s.step_requests >= limits.min_requests

    # 3. latency: absolute p99 and the rank test with its effect-size tolerance
    p99 = quantile(s.canary_latencies, 0.99)
    if p99 is None:
        hq = histogram_quantile(0.99, s.canary_buckets)
        p99 = None if hq is None else hq * 1000.0
    stable_p99 = quantile(s.stable_latencies, 0.99)
    metrics["canary_p99_ms"] = None if p99 is None else round(p99, 3)
    metrics["stable_p99_ms"] = None if stable_p99 is None else round(stable_p99, 3)
    metrics["canary_p50_ms"] = _rounded(quantile(s.canary_latencies, 0.5))
    metrics["stable_p50_ms"] = _rounded(quantile(s.stable_latencies, 0.5))
    if enough and p99 is not None:
        if p99 > limits.max_p99_latency_ms:
            failures.append(
                f"canary p99 latency {p99:.1f} ms is above max-p99-latency-ms "
                f"{limits.max_p99_latency_ms:g}"
            )
        else:
            reasons.append(f"canary p99 latency {p99:.1f} ms ≤ {limits.max_p99_latency_ms:g} ms")
    min_samples = max(20, min(limits.min_requests, 100))
    if len(s.canary_latencies) >= min_samples and len(s.stable_latencies) >= min_samples:
        looks = s.latency_looks + 1
        s = replace(s, latency_looks=looks)
        scale = 1.0 + limits.max_latency_increase
        floor = limits.min_latency_increase_ms
        p_lat = mann_whitney_greater(
            s.canary_latencies, [v * scale + floor for v in s.stable_latencies]
        )
        level = spent_alpha(limits.alpha * ALPHA_SHARES["latency"], looks)
        metrics["latency_p_value"] = round(p_lat, 6)
        if p_lat < level:
            failures.append(
                f"canary latency is more than {limits.max_latency_increase:.0%} "
                f"(and {floor:g} ms) above stable (Mann-Whitney p={p_lat:.2g} < {level:.2g}; p50 "
                f"{metrics['canary_p50_ms']} vs {metrics['stable_p50_ms']} ms)"
            )
        else:
            reasons.append(
                f"latency within {limits.max_latency_increase:.0%} of stable "
                f"(Mann-Whitney p={p_lat:.2g})"
            )

    # 4. predictions: paired (shadow) or distributions (canary)
    if pairs is not None:
        s = _paired(
            s, pairs=pairs, limits=limits, metrics=metrics, reasons=reasons, failures=failures
        )
    else:
        s = _distribution(s, limits, metrics, reasons, failures)

    if failures:
        return s, Measurement("fail", tuple(failures + reasons), metrics)
    if pairs is not None and s.pairs < limits.min_requests:
        needed = f"{s.pairs} of {limits.min_requests} requests paired by request id"
        return s, Measurement("inconclusive", (f"too little traffic: {needed}", *reasons), metrics)
    if not enough:
        needed = f"{s.step_requests} of {limits.min_requests} requests on the canary in this step"
        return s, Measurement("inconclusive", (f"too little traffic: {needed}", *reasons), metrics)
    return s, Measurement("pass", tuple(reasons), metrics)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _distribution(
    s: JudgeState,
    limits: Limits,
    metrics: dict[str, float | int | None],
    reasons: list[str],
    failures: list[str],
) -> JudgeState:
    if s.canary_classes and s.stable_classes:
        keys = sorted(set(s.canary_classes) | set(s.stable_classes))
        a = [float(s.stable_classes.get(k, 0)) for k in keys]
        b = [float(s.canary_classes.get(k, 0)) for k in keys]
        what = "predicted classes"
    elif s.canary_scores and s.stable_scores:
        bounds = sorted({bd for bd, _ in s.canary_scores} | {bd for bd, _ in s.stable_scores})
        a = bucket_counts(add_buckets([(bd, 0) for bd in bounds], s.stable_scores))
        b = bucket_counts(add_buckets([(bd, 0) for bd in bounds], s.canary_scores))
        what = "prediction scores"
    else:
        return s
    if sum(a) < limits.min_requests or sum(b) < limits.min_requests:
        return s
    looks = s.prediction_looks + 1
    s = replace(s, prediction_looks=looks)
    shift = psi(a, b)
    p_value = homogeneity_p(a, b)
    level = spent_alpha(limits.alpha * ALPHA_SHARES["predictions"], looks)
    metrics["prediction_psi"] = round(shift, 5)
    metrics["prediction_p_value"] = round(p_value, 6)
    if shift > limits.max_prediction_shift and p_value < level:
        failures.append(
            f"{what} shifted: PSI {shift:.3f} > max-prediction-shift "
            f"{limits.max_prediction_shift:g} (chi-square p={p_value:.2g})"
        )
    else:
        reasons.append(f"{what}: PSI {shift:.3f} (limit {limits.max_prediction_shift:g})")
    return s


def _paired(
    s: JudgeState,
    *,
    pairs: Sequence[tuple[float | str, float | str]],
    limits: Limits,
    metrics: dict[str, float | int | None],
    reasons: list[str],
    failures: list[str],
) -> JudgeState:
    disagreements = s.disagreements
    abs_sum = s.abs_diff_sum
    numeric = limits.max_mean_abs_diff is not None
    for left, right in pairs:
        if numeric:
            try:
                abs_sum += abs(float(left) - float(right))
            except (TypeError, ValueError):
                disagreements += 1
        elif str(left) != str(right):
            disagreements += 1
    s = replace(s, pairs=s.pairs + len(pairs), disagreements=disagreements, abs_diff_sum=abs_sum)
    metrics["paired_requests"] = s.pairs
    if s.pairs == 0:
        reasons.append("no requests paired by request id yet")
        return s
    if numeric and limits.max_mean_abs_diff is not None:
        mad = s.abs_diff_sum / s.pairs
        metrics["mean_abs_diff"] = round(mad, 6)
        if s.pairs >= limits.min_requests and mad > limits.max_mean_abs_diff:
            failures.append(
                f"shadow predictions differ from stable by {mad:.4g} on average over {s.pairs} "
                f"paired requests (max-mean-abs-diff {limits.max_mean_abs_diff:g})"
            )
        else:
            reasons.append(f"mean absolute prediction difference {mad:.4g} over {s.pairs} pairs")
        return s
    share = s.disagreements / s.pairs
    metrics["disagreement"] = round(share, 6)
    metrics["agreement"] = round(1.0 - share, 6)
    if s.pairs >= limits.min_requests and share > limits.max_disagreement:
        failures.append(
            f"shadow disagrees with stable on {share:.1%} of {s.pairs} paired requests "
            f"(max-disagreement {limits.max_disagreement:.1%})"
        )
    else:
        reasons.append(f"shadow agrees with stable on {1 - share:.1%} of {s.pairs} paired requests")
    return s


# --------------------------------------------------------------------------------------
# Analysis-run semantics (Argo Rollouts)


@dataclass(frozen=True)
class AnalysisRun:
    """Counts measurements like an Argo Rollouts AnalysisRun.

    The run fails when failed measurements exceed `failure_limit`, is inconclusive (the
    rollout pauses for a decision) when inconclusive ones exceed `inconclusive_limit`, and
    errors when metric-read errors in a row exceed `consecutive_error_limit`; a measurement
    that is not an error resets the consecutive-error count.
    """

    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    successful: int = 0

    def record(self, outcome: Outcome) -> AnalysisRun:
        if outcome == "error":
            return replace(
                self, errors=self.errors + 1, consecutive_errors=self.consecutive_errors + 1
            )
        run = replace(self, consecutive_errors=0)
        if outcome == "fail":
            return replace(run, failed=run.failed + 1)
        if outcome == "inconclusive":
            return replace(run, inconclusive=run.inconclusive + 1)
        return replace(run, successful=run.successful + 1)

    @property
    def phase(self) -> Phase:
        if self.consecutive_errors > self.consecutive_error_limit:
            return "error"
        if self.failed > self.failure_limit:
            return "failed"
        if self.inconclusive > self.inconclusive_limit:
            return "inconclusive"
        return "running"

    def explain(self) -> str:
        phase = self.phase
        if phase == "error":
            return (
                f"{self.consecutive_errors} metric-read errors in a row "
                f"(consecutive-error-limit {self.consecutive_error_limit})"
            )
        if phase == "failed":
            return f"{self.failed} failed measurement(s) (failure-limit {self.failure_limit})"
        if phase == "inconclusive":
            return (
                f"{self.inconclusive} inconclusive measurement(s) "
                f"(inconclusive-limit {self.inconclusive_limit})"
            )
        return (
            f"{self.successful} passed, {self.failed} failed, {self.inconclusive} "
            f"inconclusive, {self.errors} errors"
        )

"""The judge: pure functions that decide pass, fail, inconclusive or error for one interval.

Each interval the controller hands the judge what each arm (stable and canary, or stable and
shadow) did during that interval (`ArmWindow`: requests, server errors, latency histogram or
latencies, predicted classes, score histogram). The judge keeps what it needs across
intervals in a `JudgeState` and returns a `Measurement`. Nothing here reads a clock, a socket
or a file, so every decision can be replayed and tested with a fake metric provider.
`step_decision` is the rule that turns measurements into the end of a step (pass, roll back,
pause, or one more interval); the controller and `benchmarks/judge.py` both use it.

**One alpha budget.** Every check that can fail a rollout gets a share of `alpha`
(`ALPHA_SHARES`, they add up to 1), and fails only on anytime-valid evidence at its share, so
the chance that a canary that meets every limit and tolerance is rolled back is at most
`alpha` however many intervals are looked at (a union bound over the checks; within a check,
Ville's inequality for test martingales or a spending of its share over the looks):

- **error rate vs stable** — a mixture sequential probability ratio test on the odds ratio of
  an error on the canary. Given the errors of an interval, their split between the arms is
  (Fisher's noncentral) hypergeometric with odds ratio 1 under "the canary is no worse"; the
  product of the per-interval likelihood ratios, mixed over a grid of odds ratios, is a test
  martingale under that hypothesis.
- **error rate, absolute** — a mixture test of "canary error rate ≤ `max-error-rate`": it
  fails when the lower bound of the canary's error-rate confidence sequence is above it.
- **latency quantiles vs stable** (`quantiles`, default p50 and p99) — confidence sequences
  for each arm's quantile from its latency histogram (a Bernoulli mixture martingale on the
  count below each bucket bound): fails when the canary's lower bound is above
  ``(1 + max-latency-increase)`` times stable's upper bound ``+ min-latency-increase-ms``.
- **latency, absolute** — fails when the lower bound of the canary's p99 is above
  `max-p99-latency-ms`.
- **predictions** — the population stability index between the arms' predicted classes and,
  separately, their score histograms (classifiers with scores too), corrected for its
  small-sample bias (``(K-1)(1/n_a + 1/n_b)``), with a normal-approximation bound whose level
  is the check's share spent over its looks (``a·6/(π²k²)`` at the k-th look); fails when the
  lower bound is above `max-prediction-shift`.
- **shadow** — predictions paired by request id: the disagreement rate's confidence sequence
  against `shadow.max-disagreement` (regression: the mean absolute difference against
  `shadow.max-mean-abs-diff`, a point estimate — the one check outside the budget, as an
  unbounded mean has no distribution-free confidence sequence).

**Pass only on evidence** (non-inferiority): an interval passes only when the upper bounds
show the canary inside every tolerance — error-rate increase over stable ≤
`max-error-rate-increase`, each latency quantile ≤ ``(1 + max-latency-increase)`` times stable's
``+ min-latency-increase-ms`` (or ≤ `latency-ok-ms`, default a fifth of
`max-p99-latency-ms`), the prediction shift ≤ `max-prediction-shift` (shadow: the
disagreement ≤ `max-disagreement`) — each bound at the same share of `alpha`, so a canary
outside a tolerance passes through that check with probability at most its share. Until then
the interval is *inconclusive* with the reasons; the controller extends the step up to
`max-intervals` and then pauses for a decision. Fewer than `min-requests` canary requests in
the step is inconclusive too.

**Input hygiene**: a window with a negative count, more errors than requests, or a NaN or
infinite value is an *error* reading: it is not judged, leaves the state as it was, and does
not count toward `min-intervals`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

Verdict = Literal["pass", "fail", "inconclusive", "error"]
Outcome = Literal["pass", "fail", "inconclusive", "error"]
Phase = Literal["running", "successful", "failed", "inconclusive", "error"]
StepAction = Literal["continue", "pass", "failed", "paused"]

# Odds ratios (canary error odds over stable error odds) the mixture is spread over, equal
# weights. Spanning 1.5x to 30x keeps power against both mild and gross regressions.
ERROR_ODDS_GRID: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0)
# Multiples of the absolute error limit the (older) absolute test mixed over; kept for
# `rate_limit_loglr`'s callers.
RATE_GRID: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Log-odds shifts the Bernoulli mixture martingales spread over (equal weights): from a
# hair's breadth to twenty-fold odds, so bounds tighten at every sample size.
LOG_ODDS_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# How `alpha` is split between the checks that can fail a rollout (they add up to 1).
ALPHA_SHARES: Mapping[str, float] = {
    "errors": 0.3,
    "error_limit": 0.1,
    "latency": 0.3,
    "latency_limit": 0.1,
    "predictions": 0.2,
}
SHADOW_SHARE = 0.2  # shadow: the disagreement check takes the predictions' share
MAX_SAMPLES = 4000
# a latency quantile shown at or below this passes whatever stable's is, when neither
# latency-ok-ms nor an SLO says otherwise (what the old default limit of 50 ms gave: a fifth)
LATENCY_OK_MS = 10.0
MIN_PREDICTIONS = 50  # predictions per arm before the shift is judged (normal approximation)
_PSI_EPS = 1e-4
_PSEUDO = 0.5  # per-cell pseudo-count of the PSI estimate (no log of zero)


def _fine_edges() -> tuple[float, ...]:
    """Bucket bounds (seconds) raw latencies are counted into: 3 % apart, 10 µs to 100 s."""
    out = []
    value = 1e-5
    while value < 100.0:
        out.append(float(f"{value:.6g}"))
        value *= 1.03
    return tuple(out)


FINE_EDGES_S: tuple[float, ...] = _fine_edges()


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
class ExpectedPredictions:
    """What evaluation measured on the held-out rows: the shift a model change is meant to make.

    `shift` holds the PSI between the candidate's and the champion's predictions on the same
    held-out rows (`classes`, `scores`); the candidate's and the champion's own distributions
    there (class counts, cumulative score buckets) let the judge tell serving skew (the
    canary's live predictions departing from its own held-out ones) from the intended change.
    """

    shift: Mapping[str, float] = field(default_factory=dict)
    candidate_classes: Mapping[str, int] = field(default_factory=dict)
    candidate_scores: tuple[tuple[float, int], ...] = ()
    champion_classes: Mapping[str, int] = field(default_factory=dict)
    champion_scores: tuple[tuple[float, int], ...] = ()
    champion: str | None = None  # the champion's model version, for the verdict's words


@dataclass(frozen=True)
class Limits:
    """The judge's settings: the environment's `analysis` section and its min-requests.

    `max_error_rate` and `max_p99_latency_ms` are the user's SLO: None (the default) judges
    errors and latency against stable only.
    """

    min_requests: int = 200
    max_error_rate: float | None = None
    max_p99_latency_ms: float | None = None
    max_prediction_shift: float = 0.1
    max_latency_increase: float = 0.2
    min_latency_increase_ms: float = 1.0
    alpha: float = 0.05
    max_disagreement: float = 0.05
    max_mean_abs_diff: float | None = None
    max_error_rate_increase: float = 0.01
    # (quantile, its latency tolerance; None: max_latency_increase)
    quantiles: tuple[tuple[float, float | None], ...] = ((0.5, None), (0.99, 0.3))
    # a quantile shown at or below this (ms) is within tolerance whatever stable's is;
    # None: a fifth of max_p99_latency_ms, else LATENCY_OK_MS
    latency_ok_ms: float | None = None
    # the error-rate tolerance may also be this share of stable's error rate (its lower
    # bound), whichever is larger: at a 5 % base rate, 0.5 allows 2.5 points
    max_error_rate_increase_relative: float | None = None
    # evaluation's measurement of the intended prediction shift (None: no shift expected)
    expected: ExpectedPredictions | None = None


@dataclass(frozen=True)
class Measurement:
    """The judge's answer for one interval."""

    verdict: Verdict
    reasons: tuple[str, ...]
    metrics: Mapping[str, float | int | None]
    pending: tuple[str, ...] = ()  # tolerances not yet shown (why an interval is inconclusive)
    # an SLO that both arms break: the environment's problem, not the canary's (pauses)
    environment: tuple[str, ...] = ()


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
    stable_buckets: tuple[tuple[float, int], ...] = ()
    error_readings: int = 0

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
    if top == math.inf:
        return math.inf
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


@lru_cache(maxsize=4096)
def _grid_terms(p0: float, side: Literal["below", "above"]) -> tuple[tuple[float, float], ...]:
    """(log p1/p0, log (1-p1)/(1-p0)) for each alternative p1 of the mixture."""
    logit = math.log(p0 / (1.0 - p0))
    lp0, lq0 = math.log(p0), math.log1p(-p0)
    sign = -1.0 if side == "below" else 1.0
    out = []
    for d in LOG_ODDS_GRID:
        z = logit + sign * d
        # log p1 and log(1 - p1) of the logistic, stably
        lp1 = -math.log1p(math.exp(-z)) if z > 0 else z - math.log1p(math.exp(z))
        lq1 = -math.log1p(math.exp(z)) if z < 0 else -z - math.log1p(math.exp(-z))
        out.append((lp1 - lp0, lq1 - lq0))
    return tuple(out)


def bernoulli_log_e(k: int, n: int, p0: float, side: Literal["below", "above"]) -> float:
    """Log e-value against "p ≥ p0" (side below) or "p ≤ p0" (side above), k successes in n.

    The equal-weight mixture over `LOG_ODDS_GRID` of likelihood ratios of alternatives on
    that side; under the hypothesis it is a nonnegative supermartingale in the observations,
    so by Ville's inequality it ever reaches ``1/a`` with probability at most ``a``.
    """
    if n <= 0:
        return 0.0
    if side == "below" and p0 <= 0.0:
        return -math.inf
    if side == "above" and p0 >= 1.0:
        return -math.inf
    if p0 >= 1.0:  # side below: p1 < 1 rejects at once when any failure is seen
        return math.inf if k < n else -math.inf
    if p0 <= 0.0:  # side above
        return math.inf if k > 0 else -math.inf
    m = n - k
    terms = [k * a + m * b for a, b in _grid_terms(p0, side)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms) / len(terms))


@lru_cache(maxsize=8192)
def rate_bound(k: int, n: int, a: float, side: Literal["lower", "upper"]) -> float:
    """One anytime-valid level-a bound of a rate from k successes in n (0 or 1 when none)."""
    if n <= 0:
        return 0.0 if side == "lower" else 1.0
    threshold = math.log(1.0 / a)
    p_hat = k / n
    if side == "upper":  # the smallest p0 with "p ≥ p0" rejected
        if bernoulli_log_e(k, n, 1.0 - 1e-12, "below") < threshold:
            return 1.0
        return _bisect(p_hat, 1.0, lambda p0: bernoulli_log_e(k, n, p0, "below") >= threshold)[1]
    if k == 0 or bernoulli_log_e(k, n, 1e-12, "above") < threshold:
        return 0.0
    # the largest p0 with "p ≤ p0" rejected
    return _bisect(0.0, p_hat, lambda p0: not (bernoulli_log_e(k, n, p0, "above") >= threshold))[0]


def _bisect(lo: float, hi: float, high_side: Callable[[float], bool]) -> tuple[float, float]:
    """(lo, hi) after 24 halvings: each midpoint becomes hi where `high_side` holds, else lo."""
    for _ in range(24):
        mid = (lo + hi) / 2
        if high_side(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def rate_bounds(k: int, n: int, a: float) -> tuple[float, float]:
    """(lower, upper) bounds of a rate from k of n, each side an anytime-valid level-a bound."""
    return rate_bound(k, n, a, "lower"), rate_bound(k, n, a, "upper")


@lru_cache(maxsize=8192)
def _critical_count(n: int, q: float, a: float, side: Literal["below", "above"]) -> int | None:
    """Side below: the largest k with "p ≥ q" rejected; above: the smallest k with "p ≤ q"
    rejected (None when no count rejects)."""
    threshold = math.log(1.0 / a)
    if side == "below":
        if bernoulli_log_e(0, n, q, "below") < threshold:
            return None
        lo, hi = 0, n  # rejected at lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if bernoulli_log_e(mid, n, q, "below") >= threshold:
                lo = mid
            else:
                hi = mid - 1
        return lo
    if bernoulli_log_e(n, n, q, "above") < threshold:
        return None
    lo, hi = 0, n  # rejected at hi
    while lo < hi:
        mid = (lo + hi) // 2
        if bernoulli_log_e(mid, n, q, "above") >= threshold:
            hi = mid
        else:
            lo = mid + 1
    return hi


def quantile_bound(
    buckets: Sequence[tuple[float, int]], q: float, a: float, side: Literal["lower", "upper"]
) -> float:
    """One side of `quantile_bounds` (buckets sorted by bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0 if side == "lower" else math.inf
    n = int(buckets[-1][1])
    counts = [c for _, c in buckets]
    if side == "lower":
        k_low = _critical_count(n, q, a, "below")
        if k_low is None:
            return 0.0
        index = bisect.bisect_right(counts, k_low) - 1  # last bound with count <= k_low
        return buckets[index][0] if index >= 0 else 0.0
    k_high = _critical_count(n, q, a, "above")
    if k_high is None:
        return math.inf
    index = bisect.bisect_left(counts, k_high)  # first bound with count >= k_high
    return buckets[index][0] if index < len(buckets) else math.inf


def quantile_bounds(
    buckets: Sequence[tuple[float, int]], q: float, a: float
) -> tuple[float, float]:
    """(lower, upper) bounds of the q-quantile from cumulative (bound, count) buckets.

    The count at or below a bound b is binomial with success probability F(b); the quantile is
    above b when "F(b) ≥ q" is rejected and at most b when "F(b) ≤ q" is. Both sides are
    anytime-valid at level a each: the bound errs only if the test at the one bound next to
    the true quantile errs (the counts are monotone in b). Bounds are bucket bounds: 0 and
    infinity when nothing is shown.
    """
    ordered = sorted(buckets)
    return quantile_bound(ordered, q, a, "lower"), quantile_bound(ordered, q, a, "upper")


def exceeds(buckets: Sequence[tuple[float, int]], q: float, limit: float, a: float) -> bool:
    """True when the q-quantile is shown above `limit` (at the first bucket bound ≥ limit)."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return False
    n = int(ordered[-1][1])
    for bound, count in ordered:
        if bound >= limit:
            if math.isinf(bound):
                return False
            return bernoulli_log_e(int(count), n, q, "below") >= math.log(1.0 / a)
    return False


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


@dataclass(frozen=True)
class Shift:
    """The PSI between two count vectors: the plug-in value, its bias-corrected estimate, and
    the standard error of that estimate."""

    raw: float
    corrected: float
    se: float
    cells: int


def psi_estimate(a: Sequence[float], b: Sequence[float]) -> Shift:
    """PSI of b against a, bias-corrected for small samples, with its standard error.

    Cells empty in both are dropped; each kept cell gets a pseudo-count of 0.5 (no log of
    zero). The plug-in PSI is biased upward by about ``(K-1)(1/n_a + 1/n_b)`` (K cells): under
    no shift ``n_a n_b/(n_a+n_b)·PSI`` is about chi-square with K-1 degrees of freedom. The
    standard error is the delta method's plus that chi-square term's.
    """
    keep = [(x, y) for x, y in zip(a, b, strict=True) if x + y > 0]
    na, nb = sum(x for x, _ in keep), sum(y for _, y in keep)
    cells = len(keep)
    if cells < 2 or na <= 0 or nb <= 0:
        return Shift(0.0, 0.0, 0.0, cells)
    za, zb = na + _PSEUDO * cells, nb + _PSEUDO * cells
    pa = [(x + _PSEUDO) / za for x, _ in keep]
    pb = [(y + _PSEUDO) / zb for _, y in keep]
    raw = sum((q - p) * math.log(q / p) for p, q in zip(pa, pb, strict=True))
    inv = 1.0 / na + 1.0 / nb
    corrected = raw - (cells - 1) * inv
    ga = [math.log(p / q) + 1.0 - q / p for p, q in zip(pa, pb, strict=True)]
    gb = [math.log(q / p) + 1.0 - p / q for p, q in zip(pa, pb, strict=True)]
    mean_a = sum(p * g for p, g in zip(pa, ga, strict=True))
    mean_b = sum(q * g for q, g in zip(pb, gb, strict=True))
    var_a = max(0.0, sum(p * g * g for p, g in zip(pa, ga, strict=True)) - mean_a**2) / na
    var_b = max(0.0, sum(q * g * g for q, g in zip(pb, gb, strict=True)) - mean_b**2) / nb
    se = math.sqrt(var_a + var_b + 2.0 * (cells - 1) * inv**2)
    return Shift(raw, corrected, se, cells)


def normal_quantile(p: float) -> float:
    """The standard normal's p-quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


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


def merge_histograms(
    a: Sequence[tuple[float, int]], b: Sequence[tuple[float, int]]
) -> tuple[tuple[float, int], ...]:
    """Sum two cumulative histograms over the bounds both have (an empty one adds nothing).

    A bound only one of them has would get a wrong cumulative count, so it is dropped: when
    the layouts differ, the sum keeps their common bounds (+Inf always).
    """
    if not a:
        return tuple(sorted(b))
    if not b:
        return tuple(sorted(a))
    other = dict(b)
    return tuple(sorted((bound, c + other[bound]) for bound, c in a if bound in other))


@lru_cache(maxsize=64)
def _edges(bounds: tuple[float, ...]) -> list[float]:
    return sorted(set(bounds) - {math.inf})


def samples_histogram(
    values_ms: Sequence[float], bounds_s: Sequence[float] | None = None
) -> tuple[tuple[float, int], ...]:
    """Latencies (ms) as a cumulative histogram in seconds over `bounds_s` (+Inf added)."""
    edges = _edges(tuple(bounds_s) if bounds_s is not None else FINE_EDGES_S)
    seconds = sorted(v / 1000.0 for v in values_ms)
    out = [(edge, bisect.bisect_right(seconds, edge)) for edge in edges]
    out.append((math.inf, len(seconds)))
    return tuple(out)


def bucket_counts(buckets: Sequence[tuple[float, int]]) -> list[float]:
    """Per-bin counts from cumulative buckets."""
    out: list[float] = []
    prev = 0
    for _, count in sorted(buckets):
        out.append(float(max(count - prev, 0)))
        prev = count
    return out


def fine_enough(buckets: Sequence[tuple[float, int]], ratio: float = 1.15) -> bool:
    """True when consecutive finite bounds between 1 ms and 1 s are at most `ratio` apart."""
    edges = [b for b, _ in sorted(buckets) if 0.001 <= b <= 1.0]
    if len(edges) < 2:
        return False
    return all(hi / lo <= ratio for lo, hi in itertools.pairwise(edges))


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _tail(values: tuple[float, ...], more: Sequence[float]) -> tuple[float, ...]:
    joined = values + tuple(more)
    return joined[-MAX_SAMPLES:]


# --------------------------------------------------------------------------------------
# Input hygiene


def window_problems(window: ArmWindow, arm: str) -> list[str]:
    """Why a window cannot be judged (empty: it can)."""
    out: list[str] = []
    if window.requests < 0 or window.errors < 0:
        out.append(f"{arm}: a negative count ({window.requests} requests, {window.errors} errors)")
    if window.errors > window.requests:
        out.append(f"{arm}: more errors ({window.errors}) than requests ({window.requests})")
    if any(not math.isfinite(v) or v < 0 for v in window.latencies_ms):
        out.append(f"{arm}: a NaN, infinite or negative latency")
    for name, buckets in (("latency", window.latency_buckets), ("score", window.score_buckets)):
        counts = [c for _, c in sorted(buckets)]
        if any(not math.isfinite(float(c)) or c < 0 for c in counts):
            out.append(f"{arm}: a NaN, infinite or negative {name} bucket count")
        elif any(b < a for a, b in itertools.pairwise(counts)):
            out.append(f"{arm}: {name} bucket counts that are not cumulative")
        if any(math.isnan(bound) for bound, _ in buckets):
            out.append(f"{arm}: a NaN {name} bucket bound")
    if any(not math.isfinite(float(v)) or v < 0 for v in window.classes.values()):
        out.append(f"{arm}: a NaN, infinite or negative class count")
    return out


# --------------------------------------------------------------------------------------
# The judge


def _fmt_rate(x: int, n: int) -> str:
    return f"{x}/{n} ({(x / n if n else 0.0):.2%})"


def _fmt_ms(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _latency_histogram(
    window: ArmWindow, extra_bounds: Sequence[float]
) -> tuple[tuple[float, int], ...]:
    """The window's latency histogram: the server's buckets when they are fine enough, else
    its latencies counted into fine bounds, else whatever buckets it has."""
    if window.latency_buckets and fine_enough(window.latency_buckets):
        return tuple(sorted(window.latency_buckets))
    if window.latencies_ms:
        return samples_histogram(window.latencies_ms, (*FINE_EDGES_S, *extra_bounds))
    return tuple(sorted(window.latency_buckets))


def _merge_latency(
    state: tuple[tuple[float, int], ...],
    window: ArmWindow,
    extra_bounds: Sequence[float],
) -> tuple[tuple[float, int], ...]:
    if not window.latency_buckets and not window.latencies_ms:
        return state
    if state and window.latencies_ms and not fine_enough(window.latency_buckets):
        # raw latencies can be counted at whatever bounds the evidence so far has
        return merge_histograms(
            state, samples_histogram(window.latencies_ms, [b for b, _ in state])
        )
    return merge_histograms(state, _latency_histogram(window, extra_bounds))


def _q_label(q: float) -> str:
    return f"p{q * 100:g}"


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
    problems = window_problems(stable, "stable") + window_problems(canary, "canary")
    if problems:
        bad = replace(state, error_readings=state.error_readings + 1)
        return bad, Measurement(
            "error",
            (f"error reading, not judged: {'; '.join(problems)}",),
            {"error_readings": bad.error_readings},
        )
    extra = () if limits.max_p99_latency_ms is None else (limits.max_p99_latency_ms / 1000.0,)
    s = _accumulate(state, stable, canary, extra=extra)
    notes = _Notes(_interval_metrics(s, stable, canary))
    has_stable = s.stable_requests > 0

    s = _errors(s, canary, stable, limits, has_stable=has_stable, notes=notes)
    _latency(s, limits, has_stable=has_stable, notes=notes)
    if pairs is not None:
        s = _paired(s, pairs=pairs, limits=limits, notes=notes)
    else:
        s = _distribution(s, limits, notes=notes)
    measurement = _decision(s, limits, paired=pairs is not None, notes=notes)
    return s, measurement


@dataclass
class _Notes:
    """What the checks of one interval write: its metrics, and the reasons, failures and
    conditions not yet shown that the measurement is made of."""

    metrics: dict[str, float | int | None]
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)


def _accumulate(
    state: JudgeState, stable: ArmWindow, canary: ArmWindow, *, extra: tuple[float, ...]
) -> JudgeState:
    """The state with this interval's counts, latencies, classes and scores added."""
    return replace(
        state,
        intervals=state.intervals + 1,
        step_requests=state.step_requests + canary.requests,
        canary_requests=state.canary_requests + canary.requests,
        canary_errors=state.canary_errors + canary.errors,
        stable_requests=state.stable_requests + stable.requests,
        stable_errors=state.stable_errors + stable.errors,
        canary_latencies=_tail(state.canary_latencies, canary.latencies_ms),
        stable_latencies=_tail(state.stable_latencies, stable.latencies_ms),
        canary_buckets=_merge_latency(state.canary_buckets, canary, extra),
        stable_buckets=_merge_latency(state.stable_buckets, stable, extra),
        canary_classes=_add_counts(state.canary_classes, canary.classes),
        stable_classes=_add_counts(state.stable_classes, stable.classes),
        canary_scores=add_buckets(state.canary_scores, canary.score_buckets),
        stable_scores=add_buckets(state.stable_scores, stable.score_buckets),
    )


def _interval_metrics(
    s: JudgeState, stable: ArmWindow, canary: ArmWindow
) -> dict[str, float | int | None]:
    return {
        "canary_requests": s.canary_requests,
        "canary_errors": s.canary_errors,
        "stable_requests": s.stable_requests,
        "stable_errors": s.stable_errors,
        "step_requests": s.step_requests,
        "interval_canary_requests": canary.requests,
        "interval_stable_requests": stable.requests,
        "interval_canary_errors": canary.errors,
        "interval_stable_errors": stable.errors,
    }


def _decision(
    s: JudgeState,
    limits: Limits,
    *,
    paired: bool,
    notes: _Notes,
) -> Measurement:
    """Fail on any failure; inconclusive on too little traffic or what is not yet shown."""
    if notes.failures:
        return Measurement("fail", tuple(notes.failures + notes.reasons), notes.metrics)
    if notes.environment:
        return Measurement(
            "inconclusive",
            (*notes.environment, *notes.reasons),
            notes.metrics,
            tuple(notes.pending),
            tuple(notes.environment),
        )
    needed = ""
    if paired and s.pairs < limits.min_requests:
        needed = f"{s.pairs} of {limits.min_requests} requests paired by request id"
    elif s.step_requests < limits.min_requests:
        needed = f"{s.step_requests} of {limits.min_requests} requests on the canary in this step"
    if needed:
        return Measurement(
            "inconclusive",
            (f"too little traffic: {needed}", *notes.reasons),
            notes.metrics,
            tuple(notes.pending),
        )
    if notes.pending:
        return Measurement(
            "inconclusive",
            (f"not yet shown within tolerance: {'; '.join(notes.pending)}", *notes.reasons),
            notes.metrics,
            tuple(notes.pending),
        )
    return Measurement("pass", tuple(notes.reasons), notes.metrics)


def _errors(
    s: JudgeState,
    canary: ArmWindow,
    stable: ArmWindow,
    limits: Limits,
    *,
    notes: _Notes,
    has_stable: bool,
) -> JudgeState:
    # 1. error rate, canary against stable (mixture SPRT on the odds ratio)
    a_err = limits.alpha * ALPHA_SHARES["errors"]
    error_loglr = tuple(
        acc + error_odds_loglr(canary.requests, canary.errors, stable.requests, stable.errors, o)
        for acc, o in zip(s.error_loglr, ERROR_ODDS_GRID, strict=True)
    )
    s = replace(s, error_loglr=error_loglr)
    log_lambda = mixture(error_loglr)
    notes.metrics["errors_log_lr"] = round(log_lambda, 4)
    notes.metrics["errors_p_value"] = round(min(1.0, math.exp(-log_lambda)), 6)
    compare = (
        f"error rate canary {_fmt_rate(s.canary_errors, s.canary_requests)} vs stable "
        f"{_fmt_rate(s.stable_errors, s.stable_requests)}"
    )
    if log_lambda >= math.log(1.0 / a_err):
        notes.failures.append(
            f"{compare}: higher on the canary (sequential test, evidence ratio "
            f"{math.exp(min(log_lambda, 700)):.3g} ≥ {1 / a_err:.3g})"
        )
    # non-inferiority: upper bound of the increase over stable
    c_high = rate_bound(s.canary_errors, s.canary_requests, limits.alpha / 2, "upper")
    s_low = rate_bound(s.stable_errors, s.stable_requests, limits.alpha / 2, "lower")
    increase = c_high - s_low
    notes.metrics["error_rate_increase_upper"] = round(increase, 6)
    tolerance = limits.max_error_rate_increase
    if limits.max_error_rate_increase_relative is not None:
        tolerance = max(tolerance, limits.max_error_rate_increase_relative * s_low)
    if not has_stable:
        pass
    elif increase <= tolerance:
        notes.reasons.append(
            f"{compare}: increase at most {increase:.2%} (tolerance {tolerance:.2%})"
        )
    else:
        notes.pending.append(
            f"error-rate increase ≤ {tolerance:.2%} (upper bound {increase:.2%}, {compare})"
        )

    # 2. the SLO's error limit (only when the user set one): the lower bound of the
    # canary's error rate; when stable is shown above it too, the environment breaks it
    if limits.max_error_rate is None:
        return s
    a_lim = limits.alpha * ALPHA_SHARES["error_limit"]
    p0 = limits.max_error_rate
    log_limit = bernoulli_log_e(s.canary_errors, s.canary_requests, p0, "above")
    limit_low = rate_bound(s.canary_errors, s.canary_requests, a_lim, "lower")
    notes.metrics["error_limit_log_lr"] = round(log_limit, 4) if math.isfinite(log_limit) else 700.0
    notes.metrics["canary_error_rate_lower"] = round(limit_low, 6)
    stable_breaks = has_stable and bernoulli_log_e(
        s.stable_errors, s.stable_requests, p0, "above"
    ) >= math.log(1.0 / a_lim)
    notes.metrics["stable_breaks_error_slo"] = int(stable_breaks)
    stable_rate = _fmt_rate(s.stable_errors, s.stable_requests)
    _slo_verdict(
        notes,
        (
            f"canary error rate {_fmt_rate(s.canary_errors, s.canary_requests)} is above "
            f"max-error-rate {p0:.2%} (lower confidence bound {limit_low:.2%})"
        )
        if log_limit >= math.log(1.0 / a_lim)
        else None,
        stable_breaks,
        stable_also=f"stable's {stable_rate}",
        stable_not_shown="stable is not shown above it",
        stable_alone=(
            f"stable's error rate {stable_rate} is above max-error-rate {p0:.2%}; "
            "the canary's is not shown above it"
        ),
    )
    return s


def _slo_verdict(
    notes: _Notes,
    canary_breaks: str | None,
    stable_breaks: bool,
    *,
    stable_also: str,
    stable_not_shown: str,
    stable_alone: str,
) -> None:
    """An SLO (an absolute limit the user set): the canary shown past it fails, unless stable
    is shown past it too, which is the environment's problem (the step pauses); stable past
    it alone is only said."""
    if canary_breaks is not None:
        if stable_breaks:
            notes.environment.append(
                f"the environment breaks the SLO, not the canary: {canary_breaks}, "
                f"and so is {stable_also}"
            )
        else:
            notes.failures.append(f"{canary_breaks}; {stable_not_shown}")
    elif stable_breaks:
        notes.reasons.append(stable_alone)


def _latency(
    s: JudgeState,
    limits: Limits,
    *,
    notes: _Notes,
    has_stable: bool,
) -> None:
    cb, sb = s.canary_buckets, s.stable_buckets
    for arm, buckets in (("canary", cb), ("stable", sb)):
        for q in (0.5, 0.99):
            value = histogram_quantile(q, buckets)
            notes.metrics[f"{arm}_{_q_label(q)}_ms"] = (
                None if value is None else round(value * 1e3, 3)
            )
    canary_n = cb[-1][1] if cb else 0
    _latency_slo(s, limits, notes=notes, has_stable=has_stable)
    if not limits.quantiles:
        return
    a_q = limits.alpha * ALPHA_SHARES["latency"] / len(limits.quantiles) / 2
    a_pass = limits.alpha / 2
    floor = limits.min_latency_increase_ms
    ok_ms = limits.latency_ok_ms
    if ok_ms is None:
        slo = limits.max_p99_latency_ms
        ok_ms = LATENCY_OK_MS if slo is None else slo / 5
    stable_n = sb[-1][1] if sb else 0
    for q, own in limits.quantiles:
        label = _q_label(q)
        tolerance = limits.max_latency_increase if own is None else own
        scale = 1.0 + tolerance
        if not has_stable or not canary_n or not stable_n:
            if has_stable:
                notes.pending.append(
                    f"{label} latency within tolerance (no latencies measured yet)"
                )
            continue
        c_low = quantile_bound(cb, q, a_q, "lower")
        s_high = quantile_bound(sb, q, a_q, "upper")
        c_high = quantile_bound(cb, q, a_pass, "upper")
        s_low = quantile_bound(sb, q, a_pass, "lower")
        c_low, c_high, s_low, s_high = (v * 1e3 for v in (c_low, c_high, s_low, s_high))
        notes.metrics[f"{label}_ratio_upper"] = (
            None if math.isinf(c_high) or s_low <= 0 else round(c_high / s_low, 4)
        )
        notes.metrics[f"{label}_ratio_lower"] = (
            None if math.isinf(s_high) or s_high <= 0 else round(c_low / s_high, 4)
        )
        if c_low > scale * s_high + floor:
            notes.failures.append(
                f"canary {label} latency is more than {tolerance:.0%} (and {floor:g} ms) above "
                f"stable: at least {_fmt_ms(c_low)} ms against at most {_fmt_ms(s_high)} ms"
            )
            continue
        if c_high <= scale * s_low + floor:
            notes.reasons.append(
                f"{label} latency within {tolerance:.0%} (+{floor:g} ms) of stable: at most "
                f"{_fmt_ms(c_high)} ms against at least {_fmt_ms(s_low)} ms"
            )
        elif ok_ms is not None and c_high <= ok_ms:
            notes.reasons.append(
                f"{label} latency at most {_fmt_ms(c_high)} ms, within latency-ok-ms "
                f"{ok_ms:g} (stable at least {_fmt_ms(s_low)} ms)"
            )
        else:
            notes.pending.append(
                f"{label} latency ≤ {scale:g} x stable + {floor:g} ms (canary at most "
                f"{_fmt_ms(c_high)} ms, stable at least {_fmt_ms(s_low)} ms)"
            )


def _latency_slo(s: JudgeState, limits: Limits, *, notes: _Notes, has_stable: bool) -> None:
    """The SLO's p99 limit (only when the user set one): fails when the canary's p99 is shown
    above it and stable's is not; when both are, the environment breaks it."""
    if limits.max_p99_latency_ms is None:
        return
    cb, sb = s.canary_buckets, s.stable_buckets
    if not (cb and cb[-1][1]):
        return
    a_abs = limits.alpha * ALPHA_SHARES["latency_limit"]
    limit_ms = limits.max_p99_latency_ms
    limit_s = limit_ms / 1000.0
    low99 = quantile_bound(cb, 0.99, a_abs, "lower")
    notes.metrics["canary_p99_lower_ms"] = round(low99 * 1e3, 3)
    stable_breaks = has_stable and bool(sb) and exceeds(sb, 0.99, limit_s, a_abs)
    notes.metrics["stable_breaks_latency_slo"] = int(stable_breaks)
    stable_p99 = notes.metrics.get("stable_p99_ms")
    _slo_verdict(
        notes,
        (
            f"canary p99 latency {notes.metrics['canary_p99_ms']} ms is above "
            f"max-p99-latency-ms {limit_ms:g} (shown at the {a_abs:.2g} level)"
        )
        if exceeds(cb, 0.99, limit_s, a_abs)
        else None,
        stable_breaks,
        stable_also=f"stable's p99 {stable_p99} ms",
        stable_not_shown="stable's p99 is not shown above it",
        stable_alone=(
            f"stable's p99 latency {stable_p99} ms is above max-p99-latency-ms {limit_ms:g}; "
            "the canary's is not shown above it"
        ),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _class_vectors(a: Mapping[str, int], b: Mapping[str, int]) -> tuple[list[float], list[float]]:
    keys = sorted(set(a) | set(b))
    return [float(a.get(k, 0)) for k in keys], [float(b.get(k, 0)) for k in keys]


def _bucket_vectors(
    a: Sequence[tuple[float, int]], b: Sequence[tuple[float, int]]
) -> tuple[list[float], list[float]] | None:
    if not a or not b:
        return None
    bounds = sorted({bd for bd, _ in a} | {bd for bd, _ in b})
    va = bucket_counts(add_buckets([(bd, 0) for bd in bounds], a))
    vb = bucket_counts(add_buckets([(bd, 0) for bd in bounds], b))
    if sum(1 for x, y in zip(va, vb, strict=True) if x + y > 0) < 2:
        return None  # one bucket holds every score (e.g. a classifier without probabilities)
    return va, vb


def _score_vectors(s: JudgeState) -> tuple[list[float], list[float]] | None:
    return _bucket_vectors(s.stable_scores, s.canary_scores)


MIN_CELL = 5  # held-out predictions per cell (both models) when evaluation's profiles are known


def coarse_cells(
    a: Sequence[float], b: Sequence[float], min_count: int = MIN_CELL
) -> list[list[int]]:
    """Consecutive cells grouped until each group holds `min_count` of both a and b.

    A score bucket that one model never uses on the held-out rows makes the PSI grow without
    bound with the sample (its pseudo-count shrinks): grouped so that every cell holds a few
    of both, the PSI between the models has a limit the live estimate converges to.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    count_a = count_b = 0.0
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        current.append(index)
        count_a += x
        count_b += y
        if count_a >= min_count and count_b >= min_count:
            groups.append(current)
            current, count_a, count_b = [], 0.0, 0.0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def _regroup(vector: Sequence[float], groups: Sequence[Sequence[int]]) -> list[float]:
    return [float(sum(vector[i] for i in g)) for g in groups]


@dataclass(frozen=True)
class _Check:
    """One prediction comparison: live stable and canary counts over the same cells, and
    (when evaluation's held-out profiles are known) the champion's and candidate's there."""

    key: str
    what: str
    stable: list[float]
    canary: list[float]
    champion: list[float] | None = None
    candidate: list[float] | None = None


def _on_bounds(buckets: Sequence[tuple[float, int]], bounds: Sequence[float]) -> list[float] | None:
    if not buckets:
        return None
    if not {bd for bd, _ in buckets} <= set(bounds):
        return None
    return bucket_counts(add_buckets([(bd, 0) for bd in bounds], buckets))


def _prediction_checks(s: JudgeState, expected: ExpectedPredictions | None) -> list[_Check]:
    checks: list[_Check] = []
    if s.canary_classes or s.stable_classes:
        stable, canary = _class_vectors(s.stable_classes, s.canary_classes)
        champion = candidate = None
        if expected is not None and expected.candidate_classes and expected.champion_classes:
            keys = sorted(set(s.canary_classes) | set(s.stable_classes))
            keys += sorted(
                (set(expected.candidate_classes) | set(expected.champion_classes)) - set(keys)
            )
            stable = [float(s.stable_classes.get(k, 0)) for k in keys]
            canary = [float(s.canary_classes.get(k, 0)) for k in keys]
            champion = [float(expected.champion_classes.get(k, 0)) for k in keys]
            candidate = [float(expected.candidate_classes.get(k, 0)) for k in keys]
        checks.append(_Check("classes", "predicted classes", stable, canary, champion, candidate))
    scores = _score_vectors(s)
    if scores is None:
        return checks
    held = _held_out_scores(s, expected)
    if held is None:
        checks.append(_Check("scores", "prediction scores", *scores))
    else:
        checks.append(held)
    return checks


def _held_out_scores(s: JudgeState, expected: ExpectedPredictions | None) -> _Check | None:
    """The score comparison over cells grouped on evaluation's held-out profiles."""
    if expected is None or not expected.candidate_scores or not expected.champion_scores:
        return None
    bounds = sorted(
        {bd for bd, _ in expected.candidate_scores} | {bd for bd, _ in expected.champion_scores}
    )
    champion = _on_bounds(expected.champion_scores, bounds)
    candidate = _on_bounds(expected.candidate_scores, bounds)
    stable = _on_bounds(s.stable_scores, bounds)
    canary = _on_bounds(s.canary_scores, bounds)
    if champion is None or candidate is None or stable is None or canary is None:
        return None
    groups = coarse_cells(champion, candidate)
    if len(groups) < 2:
        return None
    return _Check(
        "scores",
        "prediction scores",
        _regroup(stable, groups),
        _regroup(canary, groups),
        _regroup(champion, groups),
        _regroup(candidate, groups),
    )


def expected_shift(champion: Sequence[float], candidate: Sequence[float]) -> float:
    """The PSI between two models' held-out predictions, as the live estimate reaches it."""
    keep = [(x, y) for x, y in zip(champion, candidate, strict=True) if x + y > 0]
    return max(0.0, psi([x for x, _ in keep], [y for _, y in keep]))


def _serving_skew(check: _Check, limits: Limits, z: float, *, notes: _Notes) -> None:
    """Fails when the canary's live predictions depart from its own held-out ones.

    Applies only while stable's live predictions stay near the champion's held-out ones (the
    traffic looks like the held-out rows): with other traffic both arms depart, and that is
    the traffic, not the canary.
    """
    if check.candidate is None or check.champion is None:
        return
    what, key = check.what, check.key
    limit = limits.max_prediction_shift
    if min(sum(check.canary), sum(check.stable)) < MIN_PREDICTIONS:
        return
    st = psi_estimate(check.champion, check.stable)
    if st.corrected - z * st.se > limit:
        notes.reasons.append(
            f"{what}: the traffic differs from the held-out rows (stable departs from the "
            f"champion's held-out predictions too: PSI {st.corrected:.3f}), so serving "
            "skew is not judged"
        )
        return
    shift = psi_estimate(check.candidate, check.canary)
    low = shift.corrected - z * shift.se
    notes.metrics[f"{key}_skew_psi"] = round(shift.corrected, 5)
    if low > limit:
        notes.failures.append(
            f"serving skew: the canary's live {what} depart from its own held-out predictions "
            f"measured by evaluation: PSI {shift.corrected:.3f} (at least {low:.3f}) > "
            f"max-prediction-shift {limit:g} (is the image serving the evaluated model?)"
        )
    else:
        notes.reasons.append(
            f"{what}: the canary's live predictions match its held-out ones (PSI "
            f"{shift.corrected:.3f})"
        )


def _distribution(
    s: JudgeState,
    limits: Limits,
    *,
    notes: _Notes,
) -> JudgeState:
    checks = _prediction_checks(s, limits.expected)
    if not checks or s.stable_requests <= 0:
        return s
    ready = {c.key for c in checks if min(sum(c.stable), sum(c.canary)) >= MIN_PREDICTIONS}
    if not ready:
        notes.pending.append(
            f"prediction shift ≤ {limits.max_prediction_shift:g} (fewer than "
            f"{MIN_PREDICTIONS} predictions on an arm)"
        )
        return s
    looks = s.prediction_looks + 1
    s = replace(s, prediction_looks=looks)
    # the predictions' share: half to the shift against stable, half to serving skew when
    # evaluation's held-out predictions are known
    share = ALPHA_SHARES["predictions"] / (2 if limits.expected is not None else 1)
    z = normal_quantile(1.0 - spent_alpha(limits.alpha * share / 2, looks))
    z_pass = normal_quantile(1.0 - spent_alpha(limits.alpha, looks))
    limit = limits.max_prediction_shift
    stored = limits.expected.shift if limits.expected is not None else {}
    for check in checks:
        key, what = check.key, check.what
        if key not in ready:
            notes.pending.append(f"{what}: shift ≤ {limit:g} (too few predictions)")
            continue
        known = check.champion is not None and check.candidate is not None
        if check.champion is not None and check.candidate is not None:
            meant: float | None = expected_shift(check.champion, check.candidate)
        elif key in stored:
            meant = max(0.0, float(stored[key]))
        else:
            meant = None
        allowed = (meant or 0.0) + limit
        shift = psi_estimate(check.stable, check.canary)
        low, high = shift.corrected - z * shift.se, shift.corrected + z_pass * shift.se
        notes.metrics[f"{key}_psi"] = round(shift.raw, 5)
        notes.metrics[f"{key}_psi_corrected"] = round(shift.corrected, 5)
        notes.metrics[f"{key}_psi_upper"] = round(high, 5)
        if meant is not None:
            notes.metrics[f"{key}_psi_expected"] = round(meant, 5)
        if key == "classes" or "prediction_psi" not in notes.metrics:
            notes.metrics["prediction_psi"] = round(shift.corrected, 5)
        against = (
            f"evaluation's {meant:.3f} + max-prediction-shift {limit:g}"
            if meant is not None
            else f"max-prediction-shift {limit:g}"
        )
        if low > allowed:
            beyond = " beyond what evaluation measured" if meant is not None else ""
            notes.failures.append(
                f"{what} shifted{beyond}: PSI {shift.corrected:.3f} (bias-corrected; at least "
                f"{low:.3f}) > {against}"
            )
        elif high <= allowed:
            notes.reasons.append(
                f"{what}: PSI {shift.corrected:.3f}, at most {high:.3f} (limit {against})"
            )
        else:
            notes.pending.append(
                f"{what}: PSI ≤ {allowed:g} (estimate {shift.corrected:.3f}, at most {high:.3f})"
            )
        if known:
            _serving_skew(check, limits, z, notes=notes)
    return s


def _paired(
    s: JudgeState,
    *,
    pairs: Sequence[tuple[float | str, float | str]],
    limits: Limits,
    notes: _Notes,
) -> JudgeState:
    disagreements = s.disagreements
    abs_sum = s.abs_diff_sum
    numeric = limits.max_mean_abs_diff is not None
    for left, right in pairs:
        if numeric:
            try:
                diff = abs(float(left) - float(right))
            except (TypeError, ValueError):
                disagreements += 1
            else:
                if math.isfinite(diff):
                    abs_sum += diff
                else:
                    disagreements += 1
        elif str(left) != str(right):
            disagreements += 1
    s = replace(s, pairs=s.pairs + len(pairs), disagreements=disagreements, abs_diff_sum=abs_sum)
    notes.metrics["paired_requests"] = s.pairs
    if s.pairs == 0:
        notes.reasons.append("no requests paired by request id yet")
        notes.pending.append("shadow agreement (no pairs yet)")
        return s
    if numeric and limits.max_mean_abs_diff is not None:
        mad = s.abs_diff_sum / s.pairs
        notes.metrics["mean_abs_diff"] = round(mad, 6)
        if s.pairs >= limits.min_requests and mad > limits.max_mean_abs_diff:
            notes.failures.append(
                f"shadow predictions differ from stable by {mad:.4g} on average over {s.pairs} "
                f"paired requests (max-mean-abs-diff {limits.max_mean_abs_diff:g})"
            )
        else:
            notes.reasons.append(
                f"mean absolute prediction difference {mad:.4g} over {s.pairs} pairs"
            )
        return s
    share = s.disagreements / s.pairs
    low = rate_bound(s.disagreements, s.pairs, limits.alpha * SHADOW_SHARE, "lower")
    high = rate_bound(s.disagreements, s.pairs, limits.alpha, "upper")
    notes.metrics["disagreement"] = round(share, 6)
    notes.metrics["agreement"] = round(1.0 - share, 6)
    notes.metrics["disagreement_upper"] = round(high, 6)
    limit = limits.max_disagreement
    if low > limit:
        notes.failures.append(
            f"shadow disagrees with stable on {share:.1%} of {s.pairs} paired requests (at "
            f"least {low:.1%}; max-disagreement {limit:.1%})"
        )
    elif high <= limit:
        notes.reasons.append(
            f"shadow agrees with stable on {1 - share:.1%} of {s.pairs} paired requests "
            f"(disagreement at most {high:.1%})"
        )
    else:
        notes.pending.append(
            f"shadow disagreement ≤ {limit:.1%} ({share:.1%} of {s.pairs} pairs, at most "
            f"{high:.1%})"
        )
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
    inconclusive_limit: int | None = 0  # None: no limit (a step's max-intervals decides)
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
        if self.inconclusive_limit is not None and self.inconclusive > self.inconclusive_limit:
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


# --------------------------------------------------------------------------------------
# Steps: when one ends


@dataclass(frozen=True)
class StepPolicy:
    """How long a step (a canary weight, a blue/green preview, a shadow) lasts.

    It passes once it has `min_intervals` intervals that were not error readings, has lasted
    `duration` seconds, and its last measurement passed; it pauses for a decision when it has
    had `max_intervals` intervals without passing (None: no limit but the analysis run's).
    """

    min_intervals: int = 1
    max_intervals: int | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class StepProgress:
    """What a step has seen so far.

    `valid` counts the intervals that count toward `min-intervals`: not error readings, and
    with traffic on the candidate (an empty interval shows nothing).
    """

    intervals: int = 0
    valid: int = 0
    last: Outcome = "inconclusive"
    why: str = ""
    environment: str = ""  # the last interval's SLO broken by both arms (pauses the step)

    def record(
        self,
        outcome: Outcome,
        reasons: Sequence[str] = (),
        *,
        traffic: bool = True,
        environment: Sequence[str] = (),
    ) -> StepProgress:
        why = self.why
        if outcome != "pass" and reasons:
            why = reasons[0]
        return StepProgress(
            intervals=self.intervals + 1,
            valid=self.valid + (outcome != "error" and traffic),
            last=outcome,
            why=why,
            environment=environment[0] if environment else "",
        )


def step_decision(
    policy: StepPolicy, progress: StepProgress, run: AnalysisRun, elapsed: float
) -> tuple[StepAction, str]:
    """After a measurement: roll back, pause, pass the step, or look once more."""
    phase = run.phase
    last = f"; last: {progress.why}" if progress.why else ""
    if phase in ("failed", "error"):
        return "failed", f"{run.explain()}{last}"
    if phase == "inconclusive":
        return "paused", f"{run.explain()}{last}"
    if progress.environment:
        return "paused", progress.environment
    if (
        progress.last == "pass"
        and progress.valid >= policy.min_intervals
        and (elapsed >= policy.duration)
    ):
        return "pass", run.explain()
    if policy.max_intervals is not None and progress.intervals >= policy.max_intervals:
        return "paused", (
            f"inconclusive after {progress.intervals} interval(s) (max-intervals "
            f"{policy.max_intervals}){last}"
        )
    return "continue", ""

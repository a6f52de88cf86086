"""The rollout plan: how long each canary step needs to decide, before the rollout starts.

The judge passes a step only on evidence, so how long a step lasts depends on the traffic:
at 5 requests a second on the canary a p99 latency bound needs minutes. `estimate` runs the
real judge (`mlcd.rollout.judge.judge` and `step_decision`, with the limits the controller
uses) on the *expected* traffic of the environment — each interval exactly the requests,
errors and latencies the rates say, no noise — so the step ends when a typical rollout's
would (the median; `tests/unit/rollout/test_plan.py` checks it against simulated rollouts).

The traffic comes from the load test's rate (staging), else `analysis.expected-rps`, else
what `mlcd deploy` measured on the stable arm; the base error rate and the latency shape are
assumptions the plan prints (`BASE_ERROR_RATE`, a lognormal with `LATENCY_MEDIAN_MS`).
`mlcd validate` and `mlcd deploy` print the plan ("step 10%: about 14 min at 50 req/s") and
refuse one that cannot decide within `max-intervals` unless `analysis.accept-slow-plan` (or
`mlcd deploy --accept-plan`) says to go ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from mlcd.config import EnvironmentSection
from mlcd.rollout.judge import (
    AnalysisRun,
    ArmWindow,
    ExpectedPredictions,
    JudgeState,
    Limits,
    StepPolicy,
    StepProgress,
    judge,
    step_decision,
)

BASE_ERROR_RATE = 0.005
MEASURE_SECONDS = 10.0  # at most this long (one canary interval) to measure stable's rate
LATENCY_MEDIAN_MS = 5.0
LATENCY_SIGMA = 0.3
POSITIVE_SHARE = 0.37
# the server's latency buckets (serve/metrics.py LATENCY_BUCKETS): R40, 0.1 ms to 10 s
_R40 = (
    1.0, 1.06, 1.12, 1.18, 1.25, 1.32, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.12,
    2.24, 2.36, 2.5, 2.65, 2.8, 3.0, 3.15, 3.35, 3.55, 3.75, 4.0, 4.25, 4.5, 4.75,
    5.0, 5.3, 5.6, 6.0, 6.3, 6.7, 7.1, 7.5, 8.0, 8.5, 9.0, 9.5,
)  # fmt: skip
BOUNDS_S: tuple[float, ...] = (
    *(float(f"{m * 10.0**e:.6g}") for e in range(-4, 1) for m in _R40),
    10.0,
)


@dataclass(frozen=True)
class Traffic:
    """What the plan assumes about the environment's traffic."""

    rps: float
    source: str  # "the load test", "analysis.expected-rps", "stable's measured rate"
    error_rate: float = BASE_ERROR_RATE
    latency_median_ms: float = LATENCY_MEDIAN_MS
    latency_sigma: float = LATENCY_SIGMA


def canary_steps(section: EnvironmentSection) -> tuple[int, ...]:
    """The canary weights the controller goes through (the last step, 100, is the promotion).

    With a sticky key and `routing.sticky: strict` (the default) a user must see one arm from
    the first step to the promotion or rollback, and growing the canary's share of keys would
    move some of them: the steps collapse into one, the first step's weight, for the whole
    rollout.
    """
    steps = tuple(w for w in section.canary.steps if 0 < w < 100)
    if steps and section.routing.sticky_key and section.routing.sticky == "strict":
        return steps[:1]
    return steps


def sticky_note(section: EnvironmentSection) -> str | None:
    """What the weights mean with a sticky key (None: no sticky key)."""
    routing = section.routing
    if not routing.sticky_key:
        return None
    steps = tuple(w for w in section.canary.steps if 0 < w < 100)
    if not steps:
        return None
    key = routing.sticky_key
    if routing.sticky == "strict":
        dropped = steps[1:]
        also = (
            f"; the steps {', '.join(f'{w}%' for w in dropped)} are not run (a user would move)"
            if dropped
            else ""
        )
        return (
            f"sticky key {key} (strict): one cohort of {steps[0]}% of the {key} values, and "
            f"{steps[0]}% of requests without it, on the canary from the first step to the "
            f"promotion or rollback{also}; predictions are compared on the canary's requests "
            "copied to stable"
        )
    return (
        f"sticky key {key} (grow): each step's weight is the share of {key} values on the "
        "canary; a value moves at most once, stable → canary, as the weight grows; "
        "predictions are compared on the canary's requests copied to stable"
    )


@dataclass(frozen=True)
class StepPlan:
    label: str  # "shadow", "10%"
    intervals: int | None  # None: no decision within max-intervals
    seconds: float | None
    canary_requests: int
    limit: int  # the intervals the step may take


@dataclass(frozen=True)
class Plan:
    traffic: Traffic
    interval: float
    steps: tuple[StepPlan, ...] = field(default_factory=tuple)
    note: str | None = None  # what the weights mean (a sticky key)

    @property
    def decides(self) -> bool:
        """Every canary step (not the shadow phase, which goes on regardless) decides."""
        return all(s.intervals is not None for s in self.steps if s.label != "shadow")

    @property
    def seconds(self) -> float | None:
        if not self.decides:
            return None
        return sum(s.seconds or 0.0 for s in self.steps)

    def lines(self) -> list[str]:
        rate = f"{self.traffic.rps:g} req/s ({self.traffic.source})"
        out = []
        for s in self.steps:
            name = "shadow phase" if s.label == "shadow" else f"step {s.label}"
            if s.intervals is None or s.seconds is None:
                if s.label == "shadow":
                    out.append(
                        f"{name}: no decision in its {s.limit} interval(s) at {rate}; the first "
                        "step goes on with its evidence"
                    )
                else:
                    out.append(
                        f"{name}: cannot decide within max-intervals {s.limit} "
                        f"({_duration(s.limit * self.interval)}) at {rate}: it would pause"
                    )
                continue
            out.append(
                f"{name}: about {_duration(s.seconds)} at {rate} ({s.intervals} interval(s) "
                f"of {self.interval:g}s, about {s.canary_requests} requests on the canary)"
            )
        total = self.seconds
        if total is not None:
            t = self.traffic
            out.append(
                f"whole rollout: about {_duration(total)} (assuming {t.error_rate:.1%} errors "
                f"and a median latency of {t.latency_median_ms:g} ms on both arms)"
            )
        if self.note:
            out.append(self.note)
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "rps": self.traffic.rps,
            "source": self.traffic.source,
            "interval_s": self.interval,
            "decides": self.decides,
            "seconds": self.seconds,
            "sticky": self.note,
            "steps": [
                {
                    "step": s.label,
                    "intervals": s.intervals,
                    "seconds": s.seconds,
                    "canary_requests": s.canary_requests,
                    "max_intervals": s.limit,
                }
                for s in self.steps
            ],
        }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Expected:
    """Exact expected windows: fractional requests and errors carried between intervals."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic
        self.carry: dict[str, float] = {}
        dist = NormalDist(math.log(traffic.latency_median_ms / 1000.0), traffic.latency_sigma)
        self.cdf = [dist.cdf(math.log(b)) for b in BOUNDS_S]

    def _take(self, key: str, amount: float) -> int:
        total = self.carry.get(key, 0.0) + amount
        whole = int(total)
        self.carry[key] = total - whole
        return whole

    def window(self, arm: str, requests: float) -> ArmWindow:
        n = self._take(f"{arm}-n", requests)
        if n <= 0:
            return ArmWindow()
        errors = self._take(f"{arm}-e", n * self.traffic.error_rate)
        lat = tuple((b, round(n * p)) for b, p in zip(BOUNDS_S, self.cdf, strict=True))
        ok = n - errors
        pos = self._take(f"{arm}-p", ok * POSITIVE_SHARE)
        return ArmWindow(
            requests=n,
            errors=errors,
            latency_buckets=(*lat, (math.inf, n)),
            classes={k: v for k, v in (("0", ok - pos), ("1", pos)) if v},
        )


def _phase(
    expected: _Expected,
    state: JudgeState,
    limits: Limits,
    *,
    label: str,
    canary_share: float,
    stable_share: float,
    per_interval: float,
    policy: StepPolicy,
) -> tuple[StepPlan, JudgeState]:
    run = AnalysisRun(inconclusive_limit=None)
    progress = StepProgress()
    seen = 0
    limit = policy.max_intervals or 0
    for _ in range(limit):
        canary = expected.window("canary", per_interval * canary_share)
        stable = expected.window("stable", per_interval * stable_share)
        state, m = judge(state, stable, canary, limits)
        seen += canary.requests
        run = run.record(m.verdict)
        progress = progress.record(m.verdict, m.reasons, traffic=canary.requests > 0)
        action, _ = step_decision(policy, progress, run, 0.0)
        if action == "pass":
            return StepPlan(label, progress.intervals, 0.0, seen, limit), state
        if action in ("failed", "paused"):
            break
    return StepPlan(label, None, None, seen, limit), state


def limits_for(
    section: EnvironmentSection,
    task: str,
    min_requests: int,
    expected: ExpectedPredictions | None = None,
) -> Limits:
    a = section.analysis
    mad = section.shadow.max_mean_abs_diff
    if task == "regression" and mad is None:
        mad = math.inf
    return Limits(
        min_requests=min_requests,
        max_error_rate=a.max_error_rate,
        max_p99_latency_ms=a.max_p99_latency_ms,
        max_prediction_shift=a.max_prediction_shift,
        max_latency_increase=a.max_latency_increase,
        min_latency_increase_ms=a.min_latency_increase_ms,
        alpha=a.alpha,
        max_disagreement=section.shadow.max_disagreement,
        max_mean_abs_diff=mad if task == "regression" else None,
        max_error_rate_increase=a.max_error_rate_increase,
        quantiles=a.quantile_tolerances(),
        latency_ok_ms=a.latency_ok_ms,
        max_error_rate_increase_relative=a.max_error_rate_increase_relative,
        expected=expected,
    )


def estimate(section: EnvironmentSection, traffic: Traffic, limits: Limits | None = None) -> Plan:
    """The plan of a canary rollout in this environment at this traffic."""
    cfg = section.canary
    a = section.analysis
    limits = limits or limits_for(section, "classification", cfg.min_requests)
    expected = _Expected(traffic)
    per_interval = traffic.rps * cfg.interval
    state = JudgeState()
    steps: list[StepPlan] = []
    if cfg.shadow_intervals > 0:
        shadow, state = _phase(
            expected,
            state,
            limits,
            label="shadow",
            canary_share=1.0,
            stable_share=1.0,
            per_interval=per_interval,
            policy=StepPolicy(cfg.min_intervals, cfg.shadow_intervals),
        )
        steps.append(shadow)
    for weight in canary_steps(section):
        state = state.new_step()
        step, state = _phase(
            expected,
            state,
            limits,
            label=f"{weight}%",
            canary_share=weight / 100.0,
            stable_share=1.0 - weight / 100.0,
            per_interval=per_interval,
            policy=StepPolicy(cfg.min_intervals, a.max_intervals),
        )
        steps.append(step)
    timed = tuple(
        StepPlan(
            s.label,
            s.intervals,
            None if s.intervals is None else s.intervals * cfg.interval,
            s.canary_requests,
            s.limit,
        )
        for s in steps
    )
    return Plan(traffic, cfg.interval, timed, sticky_note(section))


def traffic_of(section: EnvironmentSection, measured_rps: float | None = None) -> Traffic | None:
    """The environment's traffic as the plan sees it (None: nothing to go on)."""
    if section.load_test is not None:
        return Traffic(section.load_test.rps, "the load test")
    if section.analysis.expected_rps is not None:
        return Traffic(section.analysis.expected_rps, "analysis.expected-rps")
    if measured_rps is not None and measured_rps > 0:
        return Traffic(float(f"{measured_rps:.3g}"), "stable's measured rate")
    return None

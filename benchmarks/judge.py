"""Simulated canary rollouts through mlcd's real judge and step logic, on our own generators.

    python benchmarks/judge.py            # quick: 40 rollouts a setting (about a minute)
    python benchmarks/judge.py --full     # the tables in docs/deploy.md: 400 a setting
    python benchmarks/judge.py --json     # the figures as JSON

What is real: `mlcd.rollout.judge.judge` (every check), `AnalysisRun`, `StepPolicy` /
`StepProgress` / `step_decision` (when a step passes, is extended, pauses or rolls back — the
rule the local controller runs), `JudgeState.new_step` between canary steps, the limits built
by `mlcd.rollout.controller.limits_for` from the configuration's defaults, and the server's own
bucket layouts (`mlcd.serve.metrics.LATENCY_BUCKETS`, `SCORE_BUCKETS_PROBA`): every interval
each arm's requests are turned into what `/metrics` would show (request and 5xx counts, the
latency histogram, predicted classes, the score histogram). What is simulated: the traffic
(the router's weighted split, each request's error, latency, class and score, drawn from the
arms below) and the clock (no sleeping).

Printed:
- A/A: identical arms over 12 settings (lognormal or heavy-tailed latency; 50, 200 or 1,000
  requests an interval; 1 % or 50 % of them on the canary, one step): the share of rollouts
  that end in a rollback (per check and in total), that are promoted, or that pause, with
  95 % Wilson intervals;
- regressions with the default canary configuration (steps 10 % and 50 %, min-requests 200,
  min-intervals 2, max-intervals 30): the share of bad canaries promoted, rolled back (and the
  median canary requests it took) or paused, and a prediction shift under the limit, which
  must pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from mlcd.config import EnvironmentSection
from mlcd.rollout.controller import limits_for
from mlcd.rollout.judge import (
    AnalysisRun,
    ArmWindow,
    JudgeState,
    Limits,
    StepPolicy,
    StepProgress,
    judge,
    step_decision,
)
from mlcd.serve.metrics import LATENCY_BUCKETS, SCORE_BUCKETS_PROBA

LAT_BOUNDS = np.array(LATENCY_BUCKETS)
SCORE_BOUNDS = np.array(SCORE_BUCKETS_PROBA)


# --------------------------------------------------------------------------------------
# Generators


@dataclass(frozen=True)
class Latency:
    """A latency law: lognormal (median, sigma), optionally mixed with a slow component, and
    optionally with its slowest `tail_share` stretched by `tail_factor`."""

    median_ms: float = 10.0
    sigma: float = 0.5
    slow_share: float = 0.0
    slow_median_ms: float = 40.0
    slow_sigma: float = 0.15
    tail_share: float = 0.0  # the slowest share of requests (by the base law) ...
    tail_factor: float = 1.0  # ... take this many times longer
    scale: float = 1.0  # every request takes this many times longer

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal(n)
        values = self.median_ms * np.exp(self.sigma * z)
        if self.slow_share:
            slow = rng.random(n) < self.slow_share
            values = np.where(
                slow, self.slow_median_ms * np.exp(self.slow_sigma * rng.standard_normal(n)), values
            )
        if self.tail_share:
            cut = _normal_quantile(1.0 - self.tail_share)
            values = np.where(z > cut, values * self.tail_factor, values)
        return values * self.scale


def _normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


@dataclass(frozen=True)
class Arm:
    """One version's behaviour: errors, latency, predicted class share, score law."""

    error_rate: float = 0.005
    latency: Latency = field(default_factory=Latency)
    positive_share: float = 0.37
    # scores: class 1 at 0.5 + 0.5·Beta(a, b), class 0 at 0.5 - 0.5·Beta(a, b)
    score_a: float = 2.0
    score_b: float = 2.0


def window(rng: np.random.Generator, arm: Arm, n: int) -> ArmWindow:
    """What /metrics would show for n requests to this arm (differences of two readings)."""
    if n <= 0:
        return ArmWindow()
    errors = int((rng.random(n) < arm.error_rate).sum())
    seconds = arm.latency.draw(rng, n) / 1000.0
    lat_index = np.searchsorted(LAT_BOUNDS, seconds, side="left")  # as the server's bisect_left
    lat_cum = np.cumsum(np.bincount(lat_index, minlength=len(LAT_BOUNDS) + 1))
    ok = n - errors
    positive = rng.random(ok) < arm.positive_share
    spread = rng.beta(arm.score_a, arm.score_b, ok) * 0.5
    scores = np.where(positive, 0.5 + spread, 0.5 - spread)
    score_index = np.searchsorted(SCORE_BOUNDS, scores, side="left")
    score_cum = np.cumsum(np.bincount(score_index, minlength=len(SCORE_BOUNDS) + 1))
    n_pos = int(positive.sum())
    return ArmWindow(
        requests=n,
        errors=errors,
        latency_buckets=tuple(
            zip((*LATENCY_BUCKETS, math.inf), (int(c) for c in lat_cum), strict=True)
        ),
        classes={k: v for k, v in (("0", ok - n_pos), ("1", n_pos)) if v},
        score_buckets=tuple(
            zip((*SCORE_BUCKETS_PROBA, math.inf), (int(c) for c in score_cum), strict=True)
        ),
    )


def true_psi(stable: Arm, canary: Arm, draws: int = 2_000_000) -> dict[str, float]:
    """The population PSI of classes and of the score histogram (a very large sample)."""
    rng = np.random.default_rng(7)

    def hist(arm: Arm) -> tuple[np.ndarray, np.ndarray]:
        positive = rng.random(draws) < arm.positive_share
        spread = rng.beta(arm.score_a, arm.score_b, draws) * 0.5
        scores = np.where(positive, 0.5 + spread, 0.5 - spread)
        index = np.searchsorted(SCORE_BOUNDS, scores, side="left")
        counts = np.bincount(index, minlength=len(SCORE_BOUNDS) + 1) / draws
        return np.array([1 - positive.mean(), positive.mean()]), counts

    def psi(a: np.ndarray, b: np.ndarray) -> float:
        keep = (a > 0) & (b > 0)
        return float(((b[keep] - a[keep]) * np.log(b[keep] / a[keep])).sum())

    ca, sa = hist(stable)
    cb, sb = hist(canary)
    return {"classes": round(psi(ca, cb), 4), "scores": round(psi(sa, sb), 4)}


# --------------------------------------------------------------------------------------
# One rollout: the controller's canary loop without Docker, the router or the clock


@dataclass(frozen=True)
class Config:
    steps: tuple[int, ...]
    min_requests: int
    min_intervals: int
    max_intervals: int
    limits: Limits
    run: AnalysisRun
    shadow_intervals: int = 0  # a shadow phase first (all traffic mirrored to the canary)


def default_config(steps: Sequence[int] | None = None) -> Config:
    section = EnvironmentSection()  # every key at its documented default
    cfg, a = section.canary, section.analysis
    return Config(
        steps=tuple(w for w in (steps or cfg.steps) if 0 < w < 100),
        min_requests=cfg.min_requests,
        min_intervals=cfg.min_intervals,
        max_intervals=a.max_intervals,
        limits=limits_for(section, "classification", cfg.min_requests),
        run=AnalysisRun(a.failure_limit, a.inconclusive_limit, a.consecutive_error_limit),
    )


@dataclass(frozen=True)
class Rollout:
    result: str  # promoted | rolled back | paused
    checks: tuple[str, ...]  # the checks that failed, when rolled back
    canary_requests: int
    intervals: int


CHECKS = {
    "higher on the canary": "error rate vs stable",
    "above max-error-rate": "error rate, absolute",
    "p50 latency is more than": "p50 vs stable",
    "p99 latency is more than": "p99 vs stable",
    "above max-p99-latency-ms": "p99, absolute",
    "predicted classes shifted": "class shift",
    "prediction scores shifted": "score shift",
}


def _failed_checks(reasons: Sequence[str]) -> tuple[str, ...]:
    return tuple(
        sorted({name for r in reasons for key, name in CHECKS.items() if key in r}) or ["other"]
    )


def _shadow(
    rng: np.random.Generator, stable: Arm, canary: Arm, requests: int, config: Config
) -> tuple[Rollout | None, JudgeState, int, int]:
    """The controller's shadow phase: every request mirrored to the canary, judged like a
    canary step; a failure rolls back, otherwise the first step starts with its evidence."""
    state = JudgeState()
    run = AnalysisRun(config.run.failure_limit, None, config.run.consecutive_error_limit)
    policy = StepPolicy(config.min_intervals, config.shadow_intervals, 0.0)
    progress = StepProgress()
    seen = intervals = 0
    while True:
        state, m = judge(
            state, window(rng, stable, requests), window(rng, canary, requests), config.limits
        )
        run = run.record(m.verdict)
        progress = progress.record(
            m.verdict, m.reasons, traffic=requests > 0, environment=m.environment
        )
        seen += requests
        intervals += 1
        action, _ = step_decision(policy, progress, run, 0.0)
        if action == "failed":
            return Rollout("rolled back", _failed_checks(m.reasons), seen, intervals), state, 0, 0
        if action in ("pass", "paused"):
            return None, state, seen, intervals


def rollout(
    rng: np.random.Generator, stable: Arm, canary: Arm, requests: int, config: Config
) -> Rollout:
    run = config.run
    state = JudgeState()
    carry = 0.0
    seen = intervals = 0
    if config.shadow_intervals:
        ended, state, seen, intervals = _shadow(rng, stable, canary, requests, config)
        if ended is not None:
            return ended
    for weight in config.steps:
        state = state.new_step()
        policy = StepPolicy(config.min_intervals, config.max_intervals, 0.0)
        progress = StepProgress()
        while True:
            carry += requests * weight / 100.0  # nginx's smooth weighted round robin
            n_canary = int(carry)
            carry -= n_canary
            stable_w = window(rng, stable, requests - n_canary)
            canary_w = window(rng, canary, n_canary)
            state, m = judge(state, stable_w, canary_w, config.limits)
            run = run.record(m.verdict)
            progress = progress.record(
                m.verdict, m.reasons, traffic=n_canary > 0, environment=m.environment
            )
            seen += n_canary
            intervals += 1
            action, _ = step_decision(policy, progress, run, 0.0)
            if action == "failed":
                return Rollout("rolled back", _failed_checks(m.reasons), seen, intervals)
            if action == "paused":
                return Rollout("paused", (), seen, intervals)
            if action == "pass":
                break
    return Rollout("promoted", (), seen, intervals)


# --------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Setting:
    name: str
    stable: Arm
    canary: Arm
    requests: int
    steps: tuple[int, ...] | None = None  # None: the default canary steps
    limits: dict[str, Any] = field(default_factory=dict)  # overrides of the default limits
    shadow_intervals: int = 0  # a shadow phase before the steps (issue 21's "after")


LOGNORMAL = Latency()
HEAVY = Latency(median_ms=2.0, sigma=0.2, slow_share=0.05, slow_median_ms=40.0, slow_sigma=0.15)
BASE = Arm()
HEAVY_ARM = Arm(latency=HEAVY)
# stable p99 16 ms: lognormal with median 16/e^(0.5·2.326) = 5.0 ms
P99_16 = Latency(median_ms=16.0 / math.exp(0.5 * 2.3263), sigma=0.5)


def aa_settings() -> list[Setting]:
    return [
        Setting(f"{label}, {requests}/interval, {share}%", arm, arm, requests, steps=(share,))
        for label, arm in (("lognormal", BASE), ("heavy-tailed", HEAVY_ARM))
        for requests in (50, 200, 1000)
        for share in (1, 50)
    ]


def regression_settings() -> list[Setting]:
    return [
        Setting("errors 0.5% -> 2%", BASE, replace(BASE, error_rate=0.02), 1500),
        Setting("errors 0.5% -> 5%", BASE, replace(BASE, error_rate=0.05), 1500),
        Setting(
            "latency x1.5 (whole)", BASE, replace(BASE, latency=replace(LOGNORMAL, scale=1.5)), 1500
        ),
        Setting(
            "p99 only x2, 16 -> 32 ms (slowest 5%)",
            replace(BASE, latency=P99_16),
            replace(BASE, latency=replace(P99_16, tail_share=0.05, tail_factor=2.0)),
            1000,
        ),
        Setting(
            "p99 only x2, 16 -> 32 ms (slowest 2%)",
            replace(BASE, latency=P99_16),
            replace(BASE, latency=replace(P99_16, tail_share=0.02, tail_factor=2.0)),
            1000,
        ),
        Setting("class share 37% -> 55%", BASE, replace(BASE, positive_share=0.55), 1500),
        Setting(
            "scores shift (PSI 0.27), classes unchanged",
            BASE,
            replace(BASE, score_a=2.4, score_b=1.5),
            1500,
        ),
        Setting(
            "shift under the limit (PSI 0.03), must pass",
            BASE,
            replace(BASE, positive_share=0.4551),
            1500,
        ),
        Setting("A/A, default config", BASE, BASE, 1500),
    ]


# Issue 21: time to decision and false rollbacks, before (the rules until issue 21: absolute
# limits by default, no shadow phase, a fixed error tolerance) and after (no absolute limit
# unless the user sets an SLO, a shadow phase of up to 12 intervals, an error tolerance that
# may be half of stable's rate), identical arms, one canary step at the given weight.
DECIDE_REQUESTS = (50, 200, 1500)
DECIDE_WEIGHTS = (10, 50)
DECIDE_ERRORS = (0.005, 0.05)
SHADOW_INTERVALS = 12


def decision_settings() -> list[Setting]:
    out = []
    for requests in DECIDE_REQUESTS:
        for weight in DECIDE_WEIGHTS:
            for base in DECIDE_ERRORS:
                arm = replace(BASE, error_rate=base)
                name = f"{requests}/interval, {weight}%, errors {base:.1%}"
                # before: the old defaults (max-error-rate 1 %, raised to twice the base rate
                # where 1 % would roll every canary back, max-p99-latency-ms 50)
                before = {"max_error_rate": max(0.01, 2 * base), "max_p99_latency_ms": 50.0}
                out.append(
                    Setting(f"before: {name}", arm, arm, requests, steps=(weight,), limits=before)
                )
                out.append(
                    Setting(
                        f"after: {name}",
                        arm,
                        arm,
                        requests,
                        steps=(weight,),
                        limits={"max_error_rate_increase_relative": 0.5},
                        shadow_intervals=SHADOW_INTERVALS,
                    )
                )
    return out


def _run_chunk(task: tuple[Setting, int, int, int]) -> list[Rollout]:
    setting, seed, start, count = task
    config = default_config(setting.steps)
    if setting.limits:
        config = replace(config, limits=replace(config.limits, **setting.limits))
    if setting.shadow_intervals:
        config = replace(config, shadow_intervals=setting.shadow_intervals)
    out = []
    for index in range(start, start + count):
        rng = np.random.default_rng([seed, index, zlib.crc32(setting.name.encode())])
        out.append(rollout(rng, setting.stable, setting.canary, setting.requests, config))
    return out


def simulate(
    settings: Sequence[Setting], runs: int, seed: int, workers: int
) -> dict[str, list[Rollout]]:
    chunk = max(1, runs // (4 * workers) or 1)
    tasks = [
        (s, seed, start, min(chunk, runs - start))
        for s in settings
        for start in range(0, runs, chunk)
    ]
    results: dict[str, list[Rollout]] = {s.name: [] for s in settings}
    if workers <= 1:
        done = map(_run_chunk, tasks)
        for task, rollouts in zip(tasks, done, strict=True):
            results[task[0].name] += rollouts
        return results
    with ProcessPoolExecutor(workers) as pool:
        for task, rollouts in zip(tasks, pool.map(_run_chunk, tasks), strict=True):
            results[task[0].name] += rollouts
    return results


# --------------------------------------------------------------------------------------
# Figures


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(k: int, n: int) -> dict[str, float]:
    low, high = wilson(k, n)
    return {"share": round(k / n, 4) if n else 0.0, "low": round(low, 4), "high": round(high, 4)}


def summarise(rollouts: list[Rollout]) -> dict[str, Any]:
    n = len(rollouts)
    by = Counter(r.result for r in rollouts)
    checks = Counter(c for r in rollouts if r.result == "rolled back" for c in r.checks)
    caught = [r.canary_requests for r in rollouts if r.result == "rolled back"]
    promoted = [r.intervals for r in rollouts if r.result == "promoted"]
    # time to decision: intervals to promotion or rollback; a paused rollout has not decided
    decided = sorted(r.intervals if r.result != "paused" else math.inf for r in rollouts)
    return {
        "runs": n,
        "rolled_back": share(by["rolled back"], n),
        "promoted": share(by["promoted"], n),
        "paused": share(by["paused"], n),
        "by_check": {c: share(k, n) for c, k in sorted(checks.items())},
        "median_requests_to_rollback": statistics.median(caught) if caught else None,
        "median_intervals_to_promote": statistics.median(promoted) if promoted else None,
        "median_intervals_to_decide": (
            None if not decided or math.isinf(decided[n // 2]) else decided[n // 2]
        ),
    }


def _pct(cell: dict[str, float]) -> str:
    return f"{cell['share']:6.1%} [{cell['low']:.1%}, {cell['high']:.1%}]"


def _print_decide(figures: dict[str, Any], decide: list[Setting], alpha: float) -> None:
    print(
        f"\ntime to decision, identical arms, one canary step ({figures['decide_runs']} "
        f"rollouts a setting; before: the old defaults; after: no absolute limit without an "
        f"SLO, a shadow phase of up to {SHADOW_INTERVALS} intervals, relative error tolerance "
        "0.5): median intervals to promote or roll back (paused: no decision in max-intervals)"
    )
    print(
        f"  {'setting':<40}{'decides in':>11}{'promoted':>10}{'paused':>9}"
        f"{'rolled back [95% CI]':>26}"
    )
    worst = 0.0
    for s in decide:
        row = figures["decide"][s.name]
        need = row["median_intervals_to_decide"]
        worst = max(worst, row["rolled_back"]["share"])
        print(
            f"  {s.name:<40}{'-' if need is None else f'{need:g}':>11}"
            f"{row['promoted']['share']:>10.1%}{row['paused']['share']:>9.1%}"
            f"{_pct(row['rolled_back']):>26}"
        )
    print(f"  largest false-rollback share: {worst:.1%} (alpha {alpha:.0%})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="rollouts a setting (default 40)")
    parser.add_argument("--full", action="store_true", help="400 rollouts a setting")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--save", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--only", default="", help="only the settings whose name contains this")
    parser.add_argument(
        "--decide-runs",
        type=int,
        default=20,
        help="rollouts a setting of the time-to-decision table (default 20; --full: 200)",
    )
    args = parser.parse_args(argv)
    runs = 400 if args.full else args.runs
    decide_runs = 200 if args.full else args.decide_runs

    clock = time.monotonic()
    aa = [s for s in aa_settings() if args.only in s.name]
    regressions = [s for s in regression_settings() if args.only in s.name]
    decide = [s for s in decision_settings() if args.only in s.name]
    results = simulate([*aa, *regressions], runs, args.seed, args.workers)
    results.update(simulate(decide, decide_runs, args.seed, args.workers))
    elapsed = time.monotonic() - clock
    config = default_config()
    figures = {
        "runs": runs,
        "seconds": round(elapsed, 1),
        "defaults": {
            "steps": config.steps,
            "min_requests": config.min_requests,
            "min_intervals": config.min_intervals,
            "max_intervals": config.max_intervals,
            "limits": dict(config.limits.__dict__),
        },
        "aa": {s.name: summarise(results[s.name]) for s in aa},
        "regressions": {s.name: summarise(results[s.name]) for s in regressions},
        "decide": {s.name: summarise(results[s.name]) for s in decide},
        "decide_runs": decide_runs,
        "true_psi": {
            s.name: true_psi(s.stable, s.canary)
            for s in regressions
            if s.stable.positive_share != s.canary.positive_share
            or s.stable.score_a != s.canary.score_a
        },
    }
    if args.save:
        args.save.write_text(json.dumps(figures, indent=2, default=str) + "\n", "utf-8")
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return 0
    print(
        f"{runs} simulated rollouts a setting; alpha {config.limits.alpha}; defaults: steps "
        f"{list(config.steps)}, min-requests {config.min_requests}, min-intervals "
        f"{config.min_intervals}, max-intervals {config.max_intervals}"
    )
    print("\nA/A (identical arms, one step at the canary share): rollouts ending in a rollback")
    print(f"  {'setting':<36}{'rolled back [95% CI]':>26}{'promoted':>26}{'paused':>10}  checks")
    worst = 0.0
    total_rb = total_n = 0
    for s in aa:
        row = figures["aa"][s.name]
        worst = max(worst, row["rolled_back"]["high"])
        total_rb += round(row["rolled_back"]["share"] * row["runs"])
        total_n += row["runs"]
        checks = ", ".join(f"{c} {v['share']:.1%}" for c, v in row["by_check"].items()) or "-"
        print(
            f"  {s.name:<36}{_pct(row['rolled_back']):>26}{_pct(row['promoted']):>26}"
            f"{row['paused']['share']:>9.1%}  {checks}"
        )
    if total_n:
        print(f"  {'all A/A settings':<36}{_pct(share(total_rb, total_n)):>26}")
    print(
        "\nregressions, default canary config (requests an interval in brackets): promoted, "
        "rolled back, paused"
    )
    print(
        f"  {'canary':<46}{'promoted [95% CI]':>24}{'rolled back':>24}{'paused':>9}"
        f"{'req. to catch':>15}  checks"
    )
    for s in regressions:
        row = figures["regressions"][s.name]
        checks = ", ".join(f"{c} {v['share']:.1%}" for c, v in row["by_check"].items()) or "-"
        need = row["median_requests_to_rollback"]
        print(
            f"  {s.name + f' [{s.requests}]':<46}{_pct(row['promoted']):>24}"
            f"{_pct(row['rolled_back']):>24}{row['paused']['share']:>8.1%}"
            f"{'-' if need is None else f'{need:.0f}':>15}  {checks}"
        )
    if decide:
        _print_decide(figures, decide, config.limits.alpha)
    print("\ntrue PSI of the prediction scenarios (classes, score histogram):")
    for name, values in figures["true_psi"].items():
        print(f"  {name}: classes {values['classes']}, scores {values['scores']}")
    print(f"\n({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

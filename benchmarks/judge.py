"""Simulate mlcd's judge on synthetic canary streams, beside a fixed-threshold judge.

    python benchmarks/judge.py            # the figures quoted in docs/deploy.md
    python benchmarks/judge.py --runs 50  # quicker

Each run is a canary analysis: every interval both arms receive requests (the canary its
`--weight` share), each request fails with the arm's error rate, takes a log-normal latency and
predicts class 1 with the arm's share. The judge is asked after *every* interval, as the
controller does, with failure-limit 0 (the first failed measurement rolls back).

Printed:
- A/A: identical arms, `--runs` runs of `--intervals` intervals: the share of runs that end in a
  rollback (a false rollback), for mlcd's judge and for a fixed-threshold judge that fails an
  interval when the canary's error rate, p99 or PSI in that interval is over the same limits
  (what an Argo Rollouts / Flagger analysis with fixed thresholds does);
- regressions: the share of runs that roll back within `--max-intervals` intervals and the
  canary requests it took (median), for both judges.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from mlcd.rollout.judge import (
    ArmWindow,
    JudgeState,
    Limits,
    judge,
    psi,
    quantile,
)


@dataclass(frozen=True)
class Arm:
    error_rate: float = 0.005
    latency_median_ms: float = 10.0
    latency_sigma: float = 0.5
    positive_share: float = 0.37


@dataclass(frozen=True)
class Scenario:
    name: str
    stable: Arm
    canary: Arm


LIMITS = Limits(
    min_requests=100,
    max_error_rate=0.01,
    max_p99_latency_ms=50.0,
    max_prediction_shift=0.1,
    max_latency_increase=0.2,
    alpha=0.05,
)


def window(rng: random.Random, arm: Arm, n: int) -> ArmWindow:
    errors = sum(1 for _ in range(n) if rng.random() < arm.error_rate)
    mu = math.log(arm.latency_median_ms)
    latencies = tuple(rng.lognormvariate(mu, arm.latency_sigma) for _ in range(n))
    ok = n - errors
    positives = sum(1 for _ in range(ok) if rng.random() < arm.positive_share)
    return ArmWindow(
        requests=n,
        errors=errors,
        latencies_ms=latencies,
        classes={"0": ok - positives, "1": positives},
    )


def fixed_threshold(stable: ArmWindow, canary: ArmWindow, limits: Limits) -> bool:
    """True when a fixed-threshold analysis fails this interval."""
    if canary.requests == 0:
        return False
    if canary.errors / canary.requests > limits.max_error_rate:
        return True
    p99 = quantile(canary.latencies_ms, 0.99)
    if p99 is not None and p99 > limits.max_p99_latency_ms:
        return True
    keys = sorted(set(stable.classes) | set(canary.classes))
    shift = psi([stable.classes.get(k, 0) for k in keys], [canary.classes.get(k, 0) for k in keys])
    return shift > limits.max_prediction_shift


@dataclass
class RunResult:
    mlcd_fail_at: int | None  # canary requests when the judge rolled back, None if never
    fixed_fail_at: int | None


def simulate(
    rng: random.Random, scenario: Scenario, intervals: int, per_interval: int, weight: float
) -> RunResult:
    state = JudgeState()
    n_canary = max(1, round(per_interval * weight))
    n_stable = per_interval - n_canary
    seen = 0
    mlcd_at: int | None = None
    fixed_at: int | None = None
    for _ in range(intervals):
        s = window(rng, scenario.stable, n_stable)
        c = window(rng, scenario.canary, n_canary)
        seen += c.requests
        if mlcd_at is None:
            state, measurement = judge(state, s, c, LIMITS)
            if measurement.verdict == "fail":
                mlcd_at = seen
        if fixed_at is None and fixed_threshold(s, c, LIMITS):
            fixed_at = seen
        if mlcd_at is not None and fixed_at is not None:
            break
    return RunResult(mlcd_at, fixed_at)


def run_many(
    scenario: Scenario, *, runs: int, intervals: int, per_interval: int, weight: float, seed: int
) -> dict[str, object]:
    rng = random.Random(f"{seed}-{scenario.name}")
    results = [simulate(rng, scenario, intervals, per_interval, weight) for _ in range(runs)]

    def summary(pick: Callable[[RunResult], int | None]) -> dict[str, object]:
        hits = [v for v in map(pick, results) if v is not None]
        return {
            "rollback_share": len(hits) / runs,
            "median_requests": statistics.median(hits) if hits else None,
        }

    return {
        "scenario": scenario.name,
        "mlcd": summary(lambda r: r.mlcd_fail_at),
        "fixed": summary(lambda r: r.fixed_fail_at),
    }


BASE = Arm()
SCENARIOS = [
    Scenario("errors 0.5% -> 5%", BASE, Arm(error_rate=0.05)),
    Scenario("errors 0.5% -> 2%", BASE, Arm(error_rate=0.02)),
    Scenario("latency +50%", BASE, Arm(latency_median_ms=15.0)),
    Scenario("latency x3", BASE, Arm(latency_median_ms=30.0)),
    Scenario("class-1 share 37% -> 55%", BASE, Arm(positive_share=0.55)),
]


def _pair(row: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    mlcd, fixed = row["mlcd"], row["fixed"]
    if not isinstance(mlcd, dict) or not isinstance(fixed, dict):
        raise TypeError("a figure row holds two dicts")
    return mlcd, fixed


def _share(value: object) -> str:
    return f"{float(str(value)):6.1%}"


def _requests(value: object) -> str:
    return "—" if value is None else f"{float(str(value)):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="A/A runs (default 200)")
    parser.add_argument("--intervals", type=int, default=10, help="intervals per A/A run")
    parser.add_argument("--regression-runs", type=int, default=100)
    parser.add_argument(
        "--max-intervals", type=int, default=20, help="intervals a regression run may last"
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per interval")
    parser.add_argument("--weight", type=float, default=0.5, help="canary share of requests")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    clock = time.monotonic()
    common = {
        "runs": args.runs,
        "intervals": args.intervals,
        "weight": args.weight,
        "seed": args.seed,
    }
    aa = run_many(Scenario("A/A", BASE, BASE), per_interval=args.requests, **common)
    aa_low = run_many(Scenario("A/A at 100 req/interval", BASE, BASE), per_interval=100, **common)
    regressions = [
        run_many(
            s,
            runs=args.regression_runs,
            intervals=args.max_intervals,
            per_interval=args.requests,
            weight=args.weight,
            seed=args.seed,
        )
        for s in SCENARIOS
    ]
    elapsed = time.monotonic() - clock
    figures = {
        "settings": {**vars(args), "limits": LIMITS.__dict__},
        "aa": [aa, aa_low],
        "regressions": regressions,
        "seconds": round(elapsed, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return 0
    print(
        f"judge simulation: arms at {BASE.error_rate:.1%} errors, median latency "
        f"{BASE.latency_median_ms:g} ms, canary weight {args.weight:.0%}, "
        f"{args.requests} requests/interval, alpha {LIMITS.alpha}, failure-limit 0"
    )
    print()
    print(
        f"A/A false-rollback rate ({args.runs} runs x {args.intervals} intervals, judged "
        "at every interval)"
    )
    print(f"  {'streams':<28}{'mlcd judge':>12}{'fixed thresholds':>18}")
    for row in (aa, aa_low):
        mlcd, fixed = _pair(row)
        print(
            f"  {row['scenario']!s:<28}{_share(mlcd['rollback_share']):>12}"
            f"{_share(fixed['rollback_share']):>18}"
        )
    print()
    print(
        f"regressions ({args.regression_runs} runs, at most {args.max_intervals} intervals): "
        "share caught, median canary requests to rollback"
    )
    print(
        f"  {'regression':<28}{'mlcd caught':>12}{'requests':>10}{'fixed caught':>14}"
        f"{'requests':>10}"
    )
    for row in regressions:
        mlcd, fixed = _pair(row)
        print(
            f"  {row['scenario']!s:<28}{_share(mlcd['rollback_share']):>12}"
            f"{_requests(mlcd['median_requests']):>10}{_share(fixed['rollback_share']):>14}"
            f"{_requests(fixed['median_requests']):>10}"
        )
    print(f"\n({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

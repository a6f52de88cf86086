"""Issue 21: a model change is not harm, the SLO is the user's, empty intervals do not count,
and the rollout plan agrees with simulated rollouts."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from mlcd.config import EnvironmentSection
from mlcd.rollout.gates import expected_predictions
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
from mlcd.rollout.metrics import parse_prometheus, snapshot, window
from mlcd.rollout.plan import LATENCY_SIGMA, Traffic, estimate, traffic_of

pytestmark = pytest.mark.unit

SCORE_BOUNDS = tuple(round(i / 20, 2) for i in range(1, 21))


def _scores(values: list[float]) -> tuple[tuple[float, int], ...]:
    ordered = sorted(values)
    out = [(b, sum(1 for v in ordered if v <= b)) for b in SCORE_BOUNDS]
    return (*out, (math.inf, len(ordered)))


def _arm(rng: random.Random, n: int, *, positive: float, centre: float) -> ArmWindow:
    """n requests of a model whose positive share and score centre are given."""
    pos = sum(rng.random() < positive for _ in range(n))
    scores = [min(0.999, max(0.001, rng.gauss(centre, 0.15))) for _ in range(n)]
    latencies = tuple(rng.lognormvariate(math.log(4.0), 0.3) for _ in range(n))
    return ArmWindow(
        requests=n,
        latencies_ms=latencies,
        classes={"0": n - pos, "1": pos},
        score_buckets=_scores(scores),
    )


def _held_out(rng: random.Random, *, positive: float, centre: float) -> ArmWindow:
    return _arm(rng, 400, positive=positive, centre=centre)


def _expected(stable: ArmWindow, canary: ArmWindow) -> ExpectedPredictions:
    """evaluation/shift.py's measurement, from two models' held-out windows."""
    from mlcd.rollout.judge import bucket_counts, coarse_cells, expected_shift

    keys = sorted(set(stable.classes) | set(canary.classes))
    a, b = bucket_counts(stable.score_buckets), bucket_counts(canary.score_buckets)
    groups = coarse_cells(a, b)
    return ExpectedPredictions(
        shift={
            "classes": expected_shift(
                [float(stable.classes.get(k, 0)) for k in keys],
                [float(canary.classes.get(k, 0)) for k in keys],
            ),
            "scores": expected_shift(
                [sum(a[i] for i in g) for g in groups], [sum(b[i] for i in g) for g in groups]
            ),
        },
        candidate_classes=dict(canary.classes),
        candidate_scores=canary.score_buckets,
        champion_classes=dict(stable.classes),
        champion_scores=stable.score_buckets,
    )


def _run(
    limits: Limits, *, canary_positive: float, canary_centre: float, intervals: int = 12
) -> list[str]:
    rng = random.Random(5)
    state = JudgeState()
    reasons: list[str] = []
    verdicts = []
    for _ in range(intervals):
        stable = _arm(rng, 500, positive=0.37, centre=0.35)
        canary = _arm(rng, 500, positive=canary_positive, centre=canary_centre)
        state, m = judge(state, stable, canary, limits)
        verdicts.append(m.verdict)
        reasons = list(m.reasons)
        if m.verdict == "fail":
            break
    return [verdicts[-1], *reasons]


def test_the_shift_evaluation_measured_is_not_harm() -> None:
    rng = random.Random(9)
    champion = _held_out(rng, positive=0.37, centre=0.35)
    candidate = _held_out(rng, positive=0.45, centre=0.45)
    expected = _expected(champion, candidate)
    assert expected.shift["scores"] > 0.2  # a real change, far above max-prediction-shift 0.1
    # today's rule: the intended change is taken for harm
    old = _run(Limits(min_requests=100), canary_positive=0.45, canary_centre=0.45)
    assert old[0] == "fail"
    assert any("prediction scores shifted" in r for r in old)
    # with evaluation's measurement the same canary passes
    new = _run(
        Limits(min_requests=100, expected=expected),
        canary_positive=0.45,
        canary_centre=0.45,
        intervals=20,
    )
    assert new[0] == "pass", new
    assert any("evaluation's" in r for r in new)


def test_a_canary_serving_another_model_fails_as_serving_skew() -> None:
    rng = random.Random(11)
    champion = _held_out(rng, positive=0.37, centre=0.35)
    candidate = _held_out(rng, positive=0.37, centre=0.36)  # evaluated: almost the champion
    expected = _expected(champion, candidate)
    # the image serves something else: scores far from what evaluation saw
    out = _run(Limits(min_requests=100, expected=expected), canary_positive=0.6, canary_centre=0.75)
    assert out[0] == "fail"
    assert any("serving skew" in r for r in out) or any("beyond what evaluation" in r for r in out)
    assert any("serving skew" in r for r in out)


def test_skew_is_not_judged_when_the_traffic_is_not_the_held_out_rows() -> None:
    rng = random.Random(12)
    champion = _held_out(rng, positive=0.2, centre=0.15)  # held-out rows unlike the traffic
    candidate = _held_out(rng, positive=0.2, centre=0.15)
    out = _run(
        Limits(min_requests=100, expected=_expected(champion, candidate)),
        canary_positive=0.37,
        canary_centre=0.35,
    )
    assert out[0] == "pass", out
    assert any("traffic differs from the held-out rows" in r for r in out)


def _latency_window(n: int, slow_share: float) -> ArmWindow:
    slow = round(n * slow_share)
    return ArmWindow(requests=n, latencies_ms=tuple([5.0] * (n - slow) + [500.0] * slow))


def test_without_an_slo_latency_is_judged_against_stable_only() -> None:
    # both arms: 5 % of requests at 500 ms; no SLO set: nothing absolute fails
    state, m = JudgeState(), None
    for _ in range(5):
        state, m = judge(
            state, _latency_window(400, 0.05), _latency_window(400, 0.05), Limits(min_requests=50)
        )
    assert m is not None
    assert m.verdict != "fail"
    assert not any("max-p99-latency-ms" in r for r in m.reasons)
    assert not m.environment


def test_an_slo_both_arms_break_pauses_as_the_environments_problem() -> None:
    limits = Limits(min_requests=50, max_p99_latency_ms=50)
    _state, m = judge(JudgeState(), _latency_window(400, 0.05), _latency_window(400, 0.05), limits)
    assert m.verdict == "inconclusive"
    assert m.environment
    assert "environment breaks the SLO" in m.environment[0]
    progress = StepProgress().record(m.verdict, m.reasons, environment=m.environment)
    action, why = step_decision(StepPolicy(1, 30), progress, AnalysisRun().record(m.verdict), 0)
    # AnalysisRun's default inconclusive-limit 0 would pause anyway: use none
    run = AnalysisRun(inconclusive_limit=None).record(m.verdict)
    action, why = step_decision(StepPolicy(1, 30), progress, run, 0)
    assert action == "paused"
    assert "environment" in why
    # stable within the SLO, canary above: the canary's fault
    _, m = judge(JudgeState(), _latency_window(400, 0.0), _latency_window(400, 0.05), limits)
    assert m.verdict == "fail"
    assert any("stable's p99 is not shown above it" in r for r in m.reasons)


def test_an_error_slo_both_arms_break_is_not_blamed_on_the_canary() -> None:
    limits = Limits(min_requests=50, max_error_rate=0.01)
    stable = ArmWindow(requests=2000, errors=200)
    canary = ArmWindow(requests=2000, errors=200)
    _, m = judge(JudgeState(), stable, canary, limits)
    assert m.verdict == "inconclusive"
    assert m.environment
    assert "max-error-rate" in m.environment[0]
    _, m = judge(JudgeState(), ArmWindow(requests=2000, errors=2), canary, limits)
    assert m.verdict == "fail"


def test_relative_error_tolerance_widens_at_a_high_base_rate() -> None:
    base = Limits(min_requests=50)
    relative = replace(base, max_error_rate_increase_relative=1.0)
    rng = random.Random(3)
    state_a = state_b = JudgeState()
    ma = mb = None
    for _ in range(15):
        s = ArmWindow(requests=1000, errors=sum(rng.random() < 0.05 for _ in range(1000)))
        c = ArmWindow(requests=1000, errors=sum(rng.random() < 0.05 for _ in range(1000)))
        state_a, ma = judge(state_a, s, c, base)
        state_b, mb = judge(state_b, s, c, relative)
    assert ma is not None
    assert mb is not None
    assert any("error-rate increase" in p for p in ma.pending)
    assert not any("error-rate increase" in p for p in mb.pending)


def test_intervals_without_canary_traffic_do_not_count_toward_min_intervals() -> None:
    policy = StepPolicy(min_intervals=2, max_intervals=30)
    run = AnalysisRun(inconclusive_limit=None)
    progress = StepProgress().record("inconclusive", ["too little traffic"], traffic=False)
    progress = progress.record("pass", [], traffic=True)
    assert progress.valid == 1
    assert step_decision(policy, progress, run, 0.0)[0] == "continue"
    progress = progress.record("pass", [], traffic=True)
    assert step_decision(policy, progress, run, 0.0)[0] == "pass"


def test_a_restart_within_an_interval_is_seen_from_the_start_time() -> None:
    from mlcd.rollout.metrics import MetricsError
    from mlcd.serve.metrics import Layout, Metrics

    def text(started: float, requests: int) -> str:
        metrics = Metrics(Layout(["/predict"], ["0", "1"], SCORE_BOUNDS), 1, name="m",
                          version="v1", started=started)  # fmt: skip
        for _ in range(requests):
            metrics.observe_request("/predict", 200, 0.004)
        return metrics.render()

    before = snapshot(parse_prometheus(text(1000.0, 10)))
    assert before.start_time == 1000.0
    # the server restarted and its counters climbed past the last reading
    after = snapshot(parse_prometheus(text(1030.0, 50)))
    with pytest.raises(MetricsError, match="restarted"):
        window(before, after)
    same = snapshot(parse_prometheus(text(1000.0, 50)))
    assert window(before, same).requests == 40


def test_expected_predictions_read_from_the_verdicts_form() -> None:
    doc = {
        "rows": 3,
        "candidate": {"classes": {"0": 2, "1": 1}, "scores": [[0.5, 2], ["+Inf", 3]]},
        "champion": {"classes": {"0": 3}, "scores": [[0.5, 3], ["+Inf", 3]]},
        "champion_version": "v1",
        "shift": {"classes": 0.4, "scores": 0.7},
    }
    expected = expected_predictions(doc)
    assert expected is not None
    assert expected.shift == {"classes": 0.4, "scores": 0.7}
    assert expected.candidate_scores == ((0.5, 2), (math.inf, 3))
    assert expected.champion == "v1"
    assert expected_predictions(None) is None


# --------------------------------------------------------------------------------------
# The plan against simulated rollouts


def _simulate(section: EnvironmentSection, rps: float, runs: int) -> list[int | None]:
    """Intervals each simulated canary took to pass its first step (None: paused/failed)."""
    from mlcd.rollout.plan import BOUNDS_S, limits_for

    cfg, a = section.canary, section.analysis
    limits = limits_for(section, "classification", cfg.min_requests)
    weight = cfg.steps[0]
    out: list[int | None] = []
    for seed in range(runs):
        rng = random.Random(seed)
        state = JudgeState().new_step()
        run = AnalysisRun(inconclusive_limit=None)
        progress = StepProgress()
        policy = StepPolicy(cfg.min_intervals, a.max_intervals)
        carry = 0.0
        result: int | None = None
        for _ in range(a.max_intervals):
            total = round(rps * cfg.interval)
            carry += total * weight / 100.0
            nc = int(carry)
            carry -= nc
            windows = []
            for n in (total - nc, nc):
                errors = sum(rng.random() < 0.005 for _ in range(n))
                lat = [rng.lognormvariate(math.log(5.0), LATENCY_SIGMA) / 1000.0 for _ in range(n)]
                lat.sort()
                import bisect

                buckets = tuple((b, bisect.bisect_right(lat, b)) for b in BOUNDS_S)
                pos = sum(rng.random() < 0.37 for _ in range(n - errors))
                windows.append(
                    ArmWindow(
                        requests=n,
                        errors=errors,
                        latency_buckets=(*buckets, (math.inf, n)),
                        classes={"0": n - errors - pos, "1": pos},
                    )
                )
            state, m = judge(state, windows[0], windows[1], limits)
            run = run.record(m.verdict)
            progress = progress.record(m.verdict, m.reasons, traffic=windows[1].requests > 0)
            action, _ = step_decision(policy, progress, run, 0.0)
            if action == "pass":
                result = progress.intervals
                break
            if action != "continue":
                break
        out.append(result)
    return out


@pytest.mark.parametrize("rps", [15.0, 100.0, 200.0])
def test_the_plan_matches_the_median_of_simulated_rollouts(rps: float) -> None:
    """Within a factor of two of the median of 25 simulated rollouts (the plan runs the judge
    on noiseless expected traffic; latency buckets make its answer move in steps)."""
    section = EnvironmentSection.model_validate(
        {"canary": {"steps": [10, 100], "interval": "10s", "min-requests": 100}}
    )
    plan = estimate(section, Traffic(rps, "test"))
    simulated = _simulate(section, rps, runs=25)
    decided = sorted(x if x is not None else 10**6 for x in simulated)
    median = decided[len(decided) // 2]
    step = plan.steps[0]
    if step.intervals is None:
        # the plan says it cannot decide: most simulated rollouts did not either
        assert median == 10**6, simulated
    else:
        assert median != 10**6, simulated
        assert 0.5 * median <= step.intervals <= 2.0 * median, (step.intervals, simulated)


def test_a_shadow_phase_shortens_the_first_step() -> None:
    raw = {"canary": {"steps": [10, 50, 100], "interval": "10s", "min-requests": 100}}
    without = estimate(EnvironmentSection.model_validate(raw), Traffic(50, "test"))
    raw["canary"]["shadow-intervals"] = 12  # type: ignore[index]
    with_shadow = estimate(EnvironmentSection.model_validate(raw), Traffic(50, "test"))
    assert with_shadow.steps[0].label == "shadow"
    first_without = without.steps[0].seconds
    first_with = with_shadow.steps[1].seconds
    assert first_without is not None
    assert first_with is not None
    assert first_with < first_without / 3
    assert with_shadow.seconds is not None
    assert without.seconds is not None
    assert with_shadow.seconds < without.seconds
    assert any("step 10%: about" in line for line in with_shadow.lines())


def test_a_plan_that_cannot_decide_says_so_and_traffic_comes_from_the_config() -> None:
    section = EnvironmentSection.model_validate(
        {"canary": {"steps": [10, 100], "interval": "2s"}, "analysis": {"expected-rps": 2}}
    )
    traffic = traffic_of(section)
    assert traffic is not None
    assert traffic.source == "analysis.expected-rps"
    plan = estimate(section, traffic)
    assert not plan.decides
    assert "cannot decide within max-intervals 30" in plan.lines()[0]
    assert traffic_of(EnvironmentSection()) is None

"""Sticky users (issue 21): one arm per user from the first canary step to the end, and a
prediction check that compares the models on the same inputs, not on two user mixes."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from mlcd.config import EnvironmentSection, load_config
from mlcd.rollout.controller import Controller, EnvSpec
from mlcd.rollout.judge import ArmWindow, JudgeState, Limits, judge
from mlcd.rollout.metrics import MetricsError, Recent, Snapshot, alike_predictions
from mlcd.rollout.plan import Traffic, canary_steps, estimate, sticky_note, traffic_of
from mlcd.rollout.state import Arm

pytestmark = pytest.mark.unit


def _section(tmp_path: Path, routing: str, steps: str = "[10, 50, 100]") -> EnvironmentSection:
    path = tmp_path / "mlcd.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            project: demo
            model: {{task: classification, entrypoint: m.py:f, data: d.csv, target: y}}
            environments:
              staging:
                strategy: canary
                canary: {{steps: {steps}, interval: 10s}}
                routing: {routing}
            """
        ),
        "utf-8",
    )
    return load_config(path).config.environments["staging"]


def test_a_strict_sticky_key_runs_one_cohort_step(tmp_path: Path) -> None:
    plain = _section(tmp_path, "{}")
    assert plain.routing.sticky == "strict"  # the default keeps every user on one arm
    assert canary_steps(plain) == (10, 50)
    assert sticky_note(plain) is None
    strict = _section(tmp_path, "{sticky-key: X-User-Id}")
    assert canary_steps(strict) == (10,)
    note = sticky_note(strict)
    assert note is not None
    assert "one cohort of 10% of the X-User-Id values" in note
    assert "the steps 50% are not run" in note
    grow = _section(tmp_path, "{sticky-key: X-User-Id, sticky: grow}")
    assert canary_steps(grow) == (10, 50)
    assert "moves at most once, stable → canary" in (sticky_note(grow) or "")
    # the plan says what the weights mean, and plans the one step the controller runs
    plan = estimate(strict, Traffic(200.0, "the load test"))
    assert [s.label for s in plan.steps] == ["10%"]
    assert plan.lines()[-1] == note
    assert plan.as_json()["sticky"] == note
    assert [s.label for s in estimate(grow, Traffic(200.0, "x")).steps] == ["10%", "50%"]


def test_a_bad_sticky_mode_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="sticky"):
        _section(tmp_path, "{sticky-key: X-User-Id, sticky: sometimes}")


def test_alike_predictions_come_from_the_requests_both_arms_answered() -> None:
    stable = ArmWindow(requests=5, classes={"0": 4, "1": 1})  # its users' own mix
    canary = ArmWindow(requests=2, classes={"1": 2})
    stable_recent = [
        Recent("u1", (0,), 200, 1.0),  # a stable user's request: not copied
        Recent("c1", (1,), 200, 1.0),  # the copy of the canary's c1
        Recent("c2", (0,), 200, 1.0),
        Recent("c3", (0,), 500, 1.0),  # stable failed the copy: not compared
    ]
    canary_recent = [
        Recent("c1", (1,), 200, 1.0),
        Recent("c2", (1,), 200, 1.0),
        Recent("c3", (1,), 200, 1.0),
    ]
    used: set[str] = set()
    s, c, n = alike_predictions(stable, canary, stable_recent, canary_recent, used)
    assert n == 2
    assert (dict(s.classes), dict(c.classes)) == ({"1": 1, "0": 1}, {"1": 2})
    assert (s.requests, c.requests) == (5, 2)  # counts stay the arms' own
    assert s.score_buckets == c.score_buckets == ()
    # each request counts once across intervals
    assert alike_predictions(stable, canary, stable_recent, canary_recent, used)[2] == 0
    # regression: the numbers over the arm's score buckets
    buckets = ((1.0, 0), (2.0, 0), (float("inf"), 0))
    s, c, n = alike_predictions(
        ArmWindow(requests=2, score_buckets=buckets),
        ArmWindow(requests=2, score_buckets=buckets),
        [Recent("a", (0.5,), 200, 1.0), Recent("b", (1.5,), 200, 1.0)],
        [Recent("a", (0.7,), 200, 1.0), Recent("b", (2.5,), 200, 1.0)],
        set(),
        regression=True,
    )
    assert s.score_buckets == ((1.0, 1), (2.0, 2), (float("inf"), 2))
    assert c.score_buckets == ((1.0, 1), (2.0, 1), (float("inf"), 2))


def _users(n: int, seed: int) -> dict[str, int]:
    """Users, each with a row of their own: the class one model predicts for it."""
    rng = random.Random(seed)
    return {f"user-{i}": int(rng.random() < 0.4) for i in range(n)}


def _run(
    *, alike: bool, canary_model_flips: float = 0.0, intervals: int = 8
) -> tuple[str, list[str]]:
    """A sticky canary of 10 % of 300 users whose cohort happens to predict class 1 more
    often than the rest; each interval every user sends 10 requests (all answered, 5 ms).
    The canary model flips a share of its predictions (0: the same model)."""
    users = _users(300, seed=3)
    cohort = [u for u in sorted(users) if users[u] == 1][:20] + [
        u for u in sorted(users) if users[u] == 0
    ][:10]
    rng = random.Random(5)
    state = JudgeState()
    verdict, reasons = "inconclusive", []
    for _ in range(intervals):
        stable_own: dict[str, int] = {}
        canary_own: dict[str, int] = {}
        copies: dict[str, int] = {}
        for user, label in users.items():
            for _ in range(10):
                if user in cohort:
                    answer = 1 - label if rng.random() < canary_model_flips else label
                    canary_own[str(answer)] = canary_own.get(str(answer), 0) + 1
                    copies[str(label)] = copies.get(str(label), 0) + 1
                else:
                    stable_own[str(label)] = stable_own.get(str(label), 0) + 1
        n_canary = sum(canary_own.values())
        n_stable = sum(stable_own.values())
        stable = ArmWindow(
            requests=n_stable, latencies_ms=(5.0,) * 400, classes=copies if alike else stable_own
        )
        canary = ArmWindow(requests=n_canary, latencies_ms=(5.0,) * 200, classes=canary_own)
        state, m = judge(state, stable, canary, Limits(min_requests=100))
        verdict, reasons = m.verdict, list(m.reasons)
        if verdict == "fail":
            break
    return verdict, reasons


def test_the_arms_own_mixes_fail_a_healthy_sticky_canary_alike_inputs_do_not() -> None:
    """Why the earlier strict attempt rolled back: a cohort of users whose rows differ from
    the others' makes two copies of one model look shifted. On the same inputs (the copies
    of the canary's requests that stable answered) the same canary shows no shift, and a
    canary that really predicts differently is still caught."""
    verdict, reasons = _run(alike=False)
    assert verdict == "fail"
    assert any("predicted classes shifted" in r for r in reasons), reasons
    verdict, reasons = _run(alike=True)
    assert verdict != "fail", reasons
    assert not any("shifted" in r for r in reasons), reasons
    verdict, reasons = _run(alike=True, canary_model_flips=1.0)
    assert verdict == "fail"
    assert any("predicted classes shifted" in r for r in reasons), reasons


# ------------------------------------------------ the plan from stable's measured rate


class _Reader:
    def __init__(self, readings: list[Snapshot | Exception]) -> None:
        self.readings = readings

    def read_snapshot(self) -> Snapshot:
        reading = self.readings.pop(0)
        if isinstance(reading, Exception):
            raise reading
        return reading


class _Target:
    def __init__(self, readings: list[Snapshot | Exception]) -> None:
        self.readings = readings

    def reader(self, _arm: Arm) -> _Reader:
        return _Reader(self.readings)


def _controller(readings: list[Snapshot | Exception], *, stable: bool = True) -> Controller:
    ctl = Controller(
        EnvSpec("demo", "staging", EnvironmentSection()),
        _Target(readings),  # type: ignore[arg-type]
        lambda _line: None,
    )
    if stable:
        ctl.state.stable = Arm("0.1.0", "i", "c", 1001, "blue")
    return ctl


def test_stable_measured_rate_feeds_the_plan_when_nothing_else_does() -> None:
    measured = _controller(
        [Snapshot(requests=100, start_time=5.0), Snapshot(requests=130, start_time=5.0)]
    ).stable_rps(0.05)
    assert measured is not None
    assert 0 < measured <= 30 / 0.05
    # a restarted server, an unreadable one, or no stable: nothing measured
    restarted = [Snapshot(requests=100, start_time=5.0), Snapshot(requests=130, start_time=9.0)]
    assert _controller(restarted).stable_rps(0.0) is None
    assert _controller([MetricsError("down")]).stable_rps(0.0) is None
    assert _controller([], stable=False).stable_rps(0.0) is None
    # the plan says where its traffic came from; a configured figure wins
    section = EnvironmentSection()
    traffic = traffic_of(section, 42.123)
    assert traffic is not None
    assert (traffic.rps, traffic.source) == (42.1, "stable's measured rate")
    assert "42.1 req/s (stable's measured rate)" in estimate(section, traffic).lines()[0]
    assert traffic_of(section, 0.0) is None
    configured = EnvironmentSection.model_validate({"analysis": {"expected-rps": 5}})
    assert traffic_of(configured, 42.0) == Traffic(5.0, "analysis.expected-rps")


def test_the_controller_runs_one_cohort_step_with_a_strict_sticky_key() -> None:
    """On the fake target: with a sticky key, `[10, 50, 100]` is the 10 % cohort and then the
    promotion (the router never moves to 50 %); with `sticky: grow`, every step."""
    from tests.fakes.target import FakeTarget, controller_for, holding, section

    def run(routing: dict[str, str]) -> tuple[FakeTarget, str]:
        keys = {
            "strategy": "canary",
            "canary": {"steps": [10, 50, 100], "interval": "1s", "min-requests": 100},
            "analysis": {"max-intervals": 20},
            "routing": routing,
        }
        target = FakeTarget("demo", "staging", client_rps=2000.0)
        for version in ("0.1.0", "0.2.0"):
            target.new_process()
            ctl = controller_for(target, section(**keys), rows=[{"x": 1.0}])
            with holding(ctl, "mlcd deploy staging"):
                ctl.reconcile()
                outcome = ctl.deploy(version, f"registry.example/demo@sha256:{version}", "canary")
        return target, outcome.result

    strict, result = run({"sticky-key": "X-User-Id"})
    assert result == "promoted"
    splits = [dict(w.weights) for w in strict.weights() if w.mode == "split"]
    assert splits == [{"0.1.0": 90, "0.2.0": 10}]
    steps = [e for e in strict.stored_state().history if e["event"] == "canary step"]
    assert [e["detail"] for e in steps] == [
        "10% of traffic (a sticky cohort, kept to the promotion or rollback)"
    ]
    grow, result = run({"sticky-key": "X-User-Id", "sticky": "grow"})
    assert result == "promoted"
    splits = [dict(w.weights) for w in grow.weights() if w.mode == "split"]
    assert splits == [{"0.1.0": 90, "0.2.0": 10}, {"0.1.0": 50, "0.2.0": 50}]

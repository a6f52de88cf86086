"""The rollout controller's strategies against an in-memory target (no Docker, no sockets).

Canary, blue/green, shadow, the automatic rollback on a failed check, `mlcd rollback` to the
previous release and the recovery of a crashed rollout, each asserted by what the controller
left: the state (stable, history), every router configuration it set, which arms it removed,
and the failing check of the verdict. Traffic is simulated on a virtual clock
(`tests/fakes/target.py`), so a rollout of many intervals takes a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlcd.errors import GateFailed
from mlcd.rollout.controller import Controller, DeployOutcome
from mlcd.rollout.targets.base import Route
from tests.fakes.target import (
    Crash,
    FakeTarget,
    RouteSeen,
    controller_for,
    holding,
    section,
)

pytestmark = pytest.mark.unit

V1, V2, V3 = "0.1.0", "0.2.0", "0.3.0"
IMAGE = "registry.example/demo@sha256:"
ROWS = [{"x": 1.0}]


def image(version: str) -> str:
    return IMAGE + version.replace(".", "") * 8


# small intervals and request counts: a step decides in a few virtual seconds
ANALYSIS = {"max-intervals": 20}
CANARY = {
    "strategy": "canary",
    "canary": {"steps": [10, 50, 100], "interval": "1s", "min-requests": 100, "min-intervals": 2},
    "analysis": ANALYSIS,
}
BLUE_GREEN = {
    "strategy": "blue-green",
    "blue-green": {
        "preview-duration": "3s",
        "interval": "1s",
        "min-requests": 100,
        "scale-down-delay": "5s",
        "rps": 400,
    },
    "analysis": {**ANALYSIS, "max-error-rate": 0.05},
}
SHADOW = {
    "strategy": "shadow",
    "shadow": {"duration": "3s", "interval": "1s", "min-requests": 100},
    "analysis": ANALYSIS,
}


def _target(client_rps: float = 2000.0) -> FakeTarget:
    return FakeTarget("demo", "staging", client_rps=client_rps)


def _deploy(
    target: FakeTarget, keys: dict[str, Any], version: str, strategy: str | None = None
) -> tuple[Controller, DeployOutcome]:
    """One `mlcd deploy`: a new process takes the lock, reconciles, deploys."""
    target.new_process()
    ctl = controller_for(target, section(**keys), rows=ROWS)
    with holding(ctl, "mlcd deploy staging"):
        ctl.reconcile()
        outcome = ctl.deploy(version, image(version), strategy or str(keys["strategy"]))
    return ctl, outcome


def _live(keys: dict[str, Any], *versions: str) -> FakeTarget:
    """A target where `versions` were deployed in turn (each promoted)."""
    target = _target()
    for version in versions:
        _, outcome = _deploy(target, keys, version)
        assert outcome.result in ("deployed", "promoted"), outcome.summary
    target.routes.clear()
    return target


def _events(target: FakeTarget, since: int = 0) -> list[tuple[str, str | None]]:
    return [(e["event"], e.get("version")) for e in target.stored_state().history[since:]]


def _only(weights: list[RouteSeen], mode: str) -> list[dict[str, int]]:
    return [dict(w.weights) for w in weights if w.mode == mode]


# ---------------------------------------------------------------------------- canary


def test_canary_with_healthy_metrics_walks_every_step_and_promotes() -> None:
    target = _live(CANARY, V1)
    old = target.arm_of(V1).arm.container
    _, outcome = _deploy(target, CANARY, V2)

    assert outcome.result == "promoted", outcome.summary
    assert [(w.mode, dict(w.weights)) for w in target.weights()] == [
        ("split", {V1: 90, V2: 10}),
        ("split", {V1: 50, V2: 50}),
        ("single", {V2: 100}),
    ]
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V2
    assert state.rollout is None
    assert [a.version for a in state.previous] == [V1]
    assert target.removed == [old]  # the old stable is scaled down once V2 has all traffic
    passed = [e["weight"] for e in state.history if e["event"] == "step passed"]
    assert passed == [10, 50]
    assert state.unrecorded == {"version": V2, "strategy": "canary"}
    assert target.client_errors == 0


def test_canary_error_burst_rolls_back_and_stable_keeps_all_traffic() -> None:
    target = _live(CANARY, V1)
    target.behave(V2, error_rate=0.3)
    ctl, outcome = _deploy(target, CANARY, V2)

    assert outcome.result == "rolled back", outcome.summary
    assert "analysis failed" in outcome.reasons[0]
    seen = target.weights()
    assert [(w.mode, dict(w.weights)) for w in seen] == [
        ("split", {V1: 90, V2: 10}),
        ("single", {V1: 100}),
    ]
    # the failing check is the error rate, and the step never got past 10 %
    failed = [m for m in ctl.measurements if m["outcome"] == "fail"]
    assert failed
    assert failed[-1]["phase"] == "canary 10%"
    assert failed[-1]["reasons"][0].startswith("error rate canary")
    assert "higher on the canary" in failed[-1]["reasons"][0]
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V1
    assert state.rollout is None
    assert [c for c in target.removed if V2 in c] == [target.container_name(V2, "green")]
    assert target.arm_of(V1).running
    events = [e for e, _ in _events(target)]
    tail = events[events.index("rolling back") :]
    assert tail == [
        "rolling back",
        "router",
        "traffic on stable",
        "candidate removed",
        "rolled back",
    ]


def test_canary_candidate_that_crashes_mid_step_is_rolled_back() -> None:
    target = _live(CANARY, V1)
    target.when(
        lambda t: t.clock.now > 2.5 and t.router is not None and len(t.routes) == 1,
        lambda t: t.stop(V2, exit_code=139),
    )
    _, outcome = _deploy(target, CANARY, V2)

    assert outcome.result == "rolled back"
    assert "is not running (exit code 139)" in outcome.reasons[0]
    assert _only(target.weights(), "single") == [{V1: 100}]
    assert target.stored_state().stable.version == V1  # type: ignore[union-attr]


def test_a_canary_without_clients_is_judged_on_its_load_test_through_the_router() -> None:
    keys = {**CANARY, "load-test": {"rps": 2000}}
    target = _live(keys, V1)
    target.client_rps = 0.0
    _, outcome = _deploy(target, keys, V2)
    assert outcome.result == "promoted", outcome.summary
    assert target.client_sent == 0
    assert target.synthetic_sent > 0
    assert target.loads == []  # the load stopped with the rollout
    # through the router: the canary got its step's share of it
    assert target.arm_of(V2).requests > 0


def test_a_candidate_restart_mid_step_is_an_error_reading_not_a_failure() -> None:
    target = _live(CANARY, V1)
    target.when(lambda t: t.clock.now > 3.5, lambda t: t.restart(V2))
    ctl, outcome = _deploy(target, CANARY, V2)

    assert outcome.result == "promoted", outcome.summary
    errors = [m for m in ctl.measurements if m["outcome"] == "error"]
    assert len(errors) == 1
    assert "restarted between two readings" in errors[0]["reasons"][0]
    assert "fail" not in {m["outcome"] for m in ctl.measurements}


def test_canary_with_a_shadow_phase_mirrors_before_the_first_step() -> None:
    keys = {**CANARY, "canary": {**CANARY["canary"], "shadow-intervals": 5}}  # type: ignore[dict-item]
    target = _live(keys, V1)
    _, outcome = _deploy(target, keys, V2)

    assert outcome.result == "promoted", outcome.summary
    first = target.weights()[0]
    assert (first.mode, dict(first.weights), first.shadow) == ("mirror", {V1: 100}, V2)
    assert [dict(w.weights) for w in target.weights()[1:]] == [
        {V1: 90, V2: 10},
        {V1: 50, V2: 50},
        {V2: 100},
    ]


# ---------------------------------------------------------------------------- blue/green


def test_blue_green_previews_switches_and_retires_the_old_version() -> None:
    target = _live(BLUE_GREEN, V1)
    old = target.arm_of(V1).arm.container
    ctl, outcome = _deploy(target, BLUE_GREEN, V2)

    assert outcome.result == "promoted", outcome.summary
    # the preview gets synthetic traffic on both arms; clients stay on V1 until the switch
    assert [(w.mode, dict(w.weights)) for w in target.weights()] == [("single", {V2: 100})]
    assert [m["phase"] for m in ctl.measurements if m["outcome"] == "pass"][:1] == ["preview"]
    assert any(m["phase"] == "after switch" for m in ctl.measurements)
    assert target.removed == [old]
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V2
    assert [a.version for a in state.previous] == [V1]
    assert state.retired == []


def test_blue_green_switches_back_when_the_post_switch_watch_fails() -> None:
    target = _live(BLUE_GREEN, V1)
    # healthy in the preview, failing once it has all the traffic
    target.when(
        lambda t: t.router is not None and [a.version for a, _ in t.router.primary] == [V2],
        lambda t: t.behave(V2, error_rate=0.5),
    )
    ctl, outcome = _deploy(target, BLUE_GREEN, V2)

    assert outcome.result == "rolled back", outcome.summary
    assert outcome.summary.startswith(f"switched back to {V1} after the switch")
    assert [dict(w.weights) for w in target.weights()] == [{V2: 100}, {V1: 100}]
    watch = [m for m in ctl.measurements if m["phase"] == "after switch"]
    assert watch[-1]["outcome"] == "fail"
    assert "is above max-error-rate 5.00%" in watch[-1]["reasons"][0]
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V1
    assert state.previous == []
    assert state.retired == []
    assert state.unrecorded == {}
    assert target.removed == [target.container_name(V2, "green")]
    assert target.arm_of(V1).running
    assert ("switching back", V1) in _events(target)


def test_blue_green_preview_failure_never_switches() -> None:
    target = _live(BLUE_GREEN, V1)
    target.behave(V2, latency_ms=60.0)
    ctl, outcome = _deploy(target, BLUE_GREEN, V2)

    assert outcome.result == "rolled back"
    assert "preview analysis failed" in outcome.reasons[0]
    assert [dict(w.weights) for w in target.weights()] == [{V1: 100}]
    failed = [m for m in ctl.measurements if m["outcome"] == "fail"]
    assert failed[-1]["phase"] == "preview"
    assert "p50 latency is more than 20%" in failed[-1]["reasons"][0]


# ---------------------------------------------------------------------------- shadow


def test_shadow_agreeing_with_stable_is_promoted() -> None:
    target = _live(SHADOW, V1)
    ctl, outcome = _deploy(target, SHADOW, V2)

    assert outcome.result == "promoted", outcome.summary
    seen = target.weights()
    assert [(w.mode, dict(w.weights), w.shadow) for w in seen] == [
        ("mirror", {V1: 100}, V2),
        ("single", {V2: 100}, None),
    ]
    assert ctl.measurements[-1]["phase"] == "shadow"
    assert ctl.measurements[-1]["outcome"] == "pass"
    assert target.stored_state().stable.version == V2  # type: ignore[union-attr]


def test_shadow_that_disagrees_is_refused_and_clients_never_see_it() -> None:
    target = _live(SHADOW, V1)
    target.behave(V2, positive=0.9)  # predicts "1" far more often than V1 on the same rows
    ctl, outcome = _deploy(target, SHADOW, V2)

    assert outcome.result == "rolled back"
    assert "shadow blocked from promotion" in outcome.reasons[0]
    failed = [m for m in ctl.measurements if m["outcome"] == "fail"]
    assert failed[-1]["reasons"][0].startswith("shadow disagrees with stable")
    assert [(w.mode, w.shadow) for w in target.weights()] == [("mirror", V2), ("single", None)]
    assert _only(target.weights(), "single") == [{V1: 100}]
    assert target.stored_state().stable.version == V1  # type: ignore[union-attr]
    assert target.client_errors == 0


def test_shadow_with_promote_false_is_judged_but_not_promoted() -> None:
    keys = {**SHADOW, "shadow": {**SHADOW["shadow"], "promote": False}}  # type: ignore[dict-item]
    target = _live(keys, V1)
    _, outcome = _deploy(target, keys, V2)

    assert outcome.result == "already live"
    assert "not promoted (shadow.promote: false)" in outcome.summary
    assert target.stored_state().stable.version == V1  # type: ignore[union-attr]
    assert target.container_name(V2, "green") in target.removed


# ---------------------------------------------------------------------------- rollback


def _rollback(target: FakeTarget, keys: dict[str, Any]) -> DeployOutcome:
    target.new_process()
    ctl = controller_for(target, section(**keys))
    with holding(ctl, "mlcd rollback staging"):
        return ctl.rollback_previous()


def test_rollback_by_hand_goes_back_to_the_previous_release() -> None:
    target = _live(CANARY, V1, V2, V3)
    current = target.arm_of(V3).arm.container
    outcome = _rollback(target, CANARY)

    assert outcome.result == "rolled back"
    assert outcome.summary == f"staging is back on {V2} (was {V3})"
    assert [dict(w.weights) for w in target.weights()] == [{V2: 100}]
    assert target.removed[-1] == current
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V2
    assert state.stable.image == image(V2)
    assert [a.version for a in state.previous] == [V1]
    assert target.arm_of(V2).running
    assert state.stable.container == target.arm_of(V2).arm.container
    assert _events(target)[-3:] == [
        ("router", None),
        ("traffic on previous", V2),
        ("rolled back", V3),
    ]
    # and once more, to the one before
    assert _rollback(target, CANARY).summary == f"staging is back on {V1} (was {V2})"
    with pytest.raises(GateFailed, match="no earlier release"):
        _rollback(target, CANARY)


def test_rollback_reuses_the_old_arm_a_blue_green_switch_kept() -> None:
    target = _live(BLUE_GREEN, V1)
    kept = target.arm_of(V1).arm.container
    # the deploying process dies during the post-switch watch: V1 is still kept up
    target.when(
        lambda t: t.router is not None and [a.version for a, _ in t.router.primary] == [V2],
        lambda t: t.crash(),
    )
    with pytest.raises(Crash):
        _deploy(target, BLUE_GREEN, V2)
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.version == V2
    assert [r.arm.container for r in state.retired] == [kept]
    started = list(target.started)

    target.new_process()
    target.routes.clear()
    ctl = controller_for(target, section(**BLUE_GREEN))
    with holding(ctl, "mlcd rollback staging"):
        assert ctl.reconcile() == []  # V2 runs, V1 is kept until its scale-down time
        outcome = ctl.rollback_previous()

    assert outcome.summary == f"staging is back on {V1} (was {V2})"
    assert target.started == started  # nothing started: the kept arm took the traffic
    assert [r.primary[0][0].container for r in target.routes] == [kept]
    assert target.removed == [target.container_name(V2, "green")]
    assert target.stored_state().retired == []


# ---------------------------------------------------------------------------- reconcile


def test_crash_at_the_50_percent_step_is_undone_by_the_next_command() -> None:
    target = _live(CANARY, V1)

    def at_half(call: str, arg: Any) -> bool:
        return call == "route" and isinstance(arg, Route) and arg.primary[-1][1] == 50

    target.crash_on(at_half)
    with pytest.raises(Crash):
        _deploy(target, CANARY, V2)
    crashed = target.stored_state()
    # the router took 50 % and the process died before the state recorded it
    assert [dict(w.weights) for w in target.weights()][-1] == {V1: 50, V2: 50}
    assert crashed.rollout is not None
    assert crashed.rollout.weight == 10
    assert crashed.rollout.candidate is not None
    candidate = crashed.rollout.candidate.container
    assert target.arms[candidate].running  # the container outlived its deploying process
    assert target.lock is not None  # the lock still names the dead process…
    assert target.holder() is None  # …but it is free, like a dead holder's flock

    target.new_process()
    target.routes.clear()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd status staging"):
        notes = ctl.reconcile()

    assert "interrupted" in notes[0]
    assert "restoring stable" in notes[0]
    assert [dict(w.weights) for w in target.weights()] == [{V1: 100}]
    assert candidate in target.removed
    assert candidate not in target.arms
    state = target.stored_state()
    assert state.rollout is None
    assert state.stable is not None
    assert state.stable.version == V1
    assert _events(target)[-1] == ("recovered", V2)
    assert "removed its candidate container" in state.history[-1]["detail"]


def test_crash_before_the_candidate_exists_is_recovered_without_it() -> None:
    target = _live(CANARY, V1)
    target.crash_on(lambda call, arg: call == "start_arm" and arg == V2)
    with pytest.raises(Crash):
        _deploy(target, CANARY, V2)
    crashed = target.stored_state()
    assert crashed.rollout is not None
    assert crashed.rollout.candidate is not None
    assert crashed.rollout.candidate.container not in target.arms  # named, never created

    target.new_process()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd status staging"):
        ctl.reconcile()
    state = target.stored_state()
    assert state.rollout is None
    assert state.stable is not None
    assert state.stable.version == V1
    assert "had not been created" in state.history[-1]["detail"]
    # and the next deploy goes through
    _, outcome = _deploy(target, CANARY, V2)
    assert outcome.result == "promoted", outcome.summary


def test_reconcile_restarts_a_dead_stable_and_routes_to_it() -> None:
    target = _live(CANARY, V1)
    dead = target.stop(V1)
    first_start = dead.started_at
    target.clock.sleep(10)
    target.new_process()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd status staging"):
        notes = ctl.reconcile()

    assert notes == [f"stable container {dead.arm.container} was not running: restarted"]
    assert dead.running
    assert dead.restarts == 1
    assert dead.started_at > first_start
    assert [dict(w.weights) for w in target.weights()] == [{V1: 100}]
    assert _events(target)[-1] == ("recovered", V1)
    assert target.removed == []


def test_reconcile_starts_stable_again_when_its_container_is_gone() -> None:
    target = _live(CANARY, V1)
    gone = target.arm_of(V1).arm
    target.remove_arm(gone)
    target.new_process()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd status staging"):
        ctl.reconcile()
    fresh = target.arm_of(V1)
    assert fresh.running
    assert fresh.arm.port != gone.port
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.port == fresh.arm.port
    assert [dict(w.weights) for w in target.weights()] == [{V1: 100}]


def test_reconcile_restarts_a_stopped_router() -> None:
    target = _live(CANARY, V1)
    target.router_up = False
    target.new_process()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd status staging"):
        notes = ctl.reconcile()
    assert notes == [f"the router was not running: restarted ({target.url})"]
    assert target.router_running()


def test_stable_dying_mid_canary_is_restarted_and_the_rollout_rolled_back() -> None:
    target = _live(CANARY, V1)
    stable = target.arm_of(V1).arm.container
    target.when(lambda t: len(t.routes) == 1 and t.clock.now > 1.5, lambda t: t.stop(V1))
    _, outcome = _deploy(target, CANARY, V2)
    state = target.stored_state()
    assert state.stable is not None
    assert state.stable.container == stable  # restarted, not replaced
    assert outcome.result == "rolled back"
    assert "stable is down" in outcome.reasons[0]
    assert target.arm_of(V1).running
    assert target.arm_of(V1).restarts == 1
    # held on stable at once (the candidate is not judged against a dead stable), then the
    # rollback's own switch to stable
    assert [(w.mode, dict(w.weights)) for w in target.weights()] == [
        ("split", {V1: 90, V2: 10}),
        ("single", {V1: 100}),
        ("single", {V1: 100}),
    ]
    assert V2 not in {a.arm.version for a in target.arms.values()}


# ---------------------------------------------------------------------------- the fake itself


def test_the_lock_refuses_a_second_live_process_and_down_removes_everything() -> None:
    target = _live(CANARY, V1)
    target.acquire("mlcd deploy staging")
    holder = target.me
    target.new_process()
    with pytest.raises(GateFailed, match=f"locked by pid {holder.pid}"):
        target.acquire("mlcd deploy staging")
    lines = target.down()
    assert lines == [
        f"removed arm {target.container_name(V1, 'blue')}",
        "removed the router",
        f"removed the state {target.state_location}",
        "removed the lock",
    ]
    assert target.arms == {}
    assert not target.router_running()
    assert target.stored_state().stable is None
    assert target.down() == []


# ---------------------------------------------------------------------------- readiness, pause


def test_a_candidate_that_never_gets_ready_is_removed_with_its_logs() -> None:
    target = _live(CANARY, V1)
    target.client_rps = 0.0  # no traffic to simulate while it waits 90 virtual seconds
    target.behave(V2, ready=False)
    with pytest.raises(GateFailed, match="did not become ready: /readyz answered 503") as err:
        _deploy(target, CANARY, V2)
    assert target.container_name(V2, "green") in target.removed
    assert f"log: serving {V2} from {image(V2)}" in err.value.problems
    assert target.routes == []  # clients never left stable
    assert target.clock.now >= 90.0  # READY_TIMEOUT, in virtual seconds


def test_a_canary_without_enough_traffic_pauses_for_a_decision() -> None:
    target = _live(CANARY, V1)
    target.client_rps = 20.0  # 2 canary requests an interval at 10 %: never min-requests
    ctl, outcome = _deploy(target, CANARY, V2)
    assert outcome.result == "paused", outcome.summary
    assert "inconclusive after 20 interval(s) (max-intervals 20)" in outcome.reasons[0]
    assert "too little traffic" in outcome.reasons[0]
    state = target.stored_state()
    assert state.rollout is not None
    assert state.rollout.phase == "paused"
    assert [dict(w.weights) for w in target.weights()] == [{V1: 90, V2: 10}]
    # a new deploy is refused while the decision is pending
    with pytest.raises(GateFailed, match="paused for a decision"):
        _deploy(target, CANARY, V3)
    # `mlcd abort` then rolls it back
    target.new_process()
    ctl = controller_for(target, section(**CANARY))
    with holding(ctl, "mlcd abort staging"):
        aborted = ctl.abort()
    assert aborted.result == "rolled back"
    assert [dict(w.weights) for w in target.weights()][-1] == {V1: 100}
    # and deploying the live release again changes nothing
    routes = len(target.routes)
    _, again = _deploy(target, CANARY, V1)
    assert again.result == "already live"
    assert len(target.routes) == routes

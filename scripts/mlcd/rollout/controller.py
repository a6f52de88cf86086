"""The rollout controller: the strategies and the judge's calls, once, over a deploy target.

`Controller` owns one environment through its `Target` (`mlcd.rollout.targets`: local, or a
Docker host over SSH): the state, the lock, the router and the containers. It rolls a
release out by canary steps, blue/green preview and switch, or shadow mirroring; asks the
judge every interval; and rolls back on its own when the analysis fails: traffic goes back
to stable first (the router is reloaded and the old workers drained), then the candidate is
removed, and every step is written to the environment's state on the target.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mlcd.config import BlueGreenSection, EnvironmentSection, ShadowSection
from mlcd.errors import EnvironmentMissing, GateFailed, MlcdError
from mlcd.evidence import utc_now
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
from mlcd.rollout.killpoints import checkpoint
from mlcd.rollout.metrics import (
    ArmReader,
    MetricsError,
    Recent,
    common_windows,
    pair_predictions,
)
from mlcd.rollout.router import Mode
from mlcd.rollout.state import Arm, EnvState, Retired, Rollout
from mlcd.rollout.targets.base import Route, Target

READY_TIMEOUT = 90.0
WATCH_EVERY = 1.0  # seconds between checks that both arms' containers still run
PREVIOUS_KEPT = 10
Result = Literal["promoted", "rolled back", "paused", "already live", "deployed"]


class Clock(Protocol):
    """The controller's time: the system's in production, a virtual one in the unit tests
    (`tests/fakes/target.py`), where sleeping advances the fake target's traffic instead."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """`time.monotonic`, `time.time` and `time.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class EnvSpec:
    """Everything the controller needs to know about the environment."""

    project: str
    env: str
    section: EnvironmentSection
    task: str = "classification"
    rows: list[dict[str, Any]] = field(default_factory=list)
    # evaluation's measurement of the release's intended prediction shift (None: unknown)
    expected: ExpectedPredictions | None = None


@dataclass
class DeployOutcome:
    result: Result
    summary: str
    reasons: list[str] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    waiting_for: str = ""


@dataclass
class _Analysis:
    verdict: Literal["pass", "failed", "paused"]
    explanation: str
    run: AnalysisRun
    judge_state: JudgeState
    fault: bool = False  # ended by a fault of the environment (stable down), not by the judge


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


class Controller:
    """Drives one environment through its target."""

    def __init__(self, spec: EnvSpec, target: Target, progress: Callable[[str], None]) -> None:
        self.spec = spec
        self.target = target
        self.progress = progress
        self.state: EnvState = EnvState(env=spec.env, project=spec.project)
        self.measurements: list[dict[str, Any]] = []
        # told of every state change recorded (mlcd.rollout.notify.Notifier); never fails one
        self.on_event: Callable[[str, str | None, dict[str, Any]], None] | None = None
        self.clock: Clock = SystemClock()

    def load(self) -> None:
        """Read the environment's state from the target (after taking its lock)."""
        self.state = self.target.load_state()

    # ------------------------------------------------------------------ bookkeeping

    def save(self, event: str | None = None, version: str | None = None, **detail: Any) -> None:
        if event:
            self.state.record(event, version, **detail)
            self.progress(
                f"{event}{f' {version}' if version else ''}"
                + (f": {detail['detail']}" if "detail" in detail else "")
            )
        self.target.save_state(self.state)
        if event and self.on_event is not None:
            try:
                self.on_event(event, version, {**detail, "analysis": self.state.last_analysis})
            except Exception as exc:  # noqa: BLE001 - telling people never stops a rollout
                self.progress(f"could not notify {event}: {exc}")

    # ------------------------------------------------------------------ containers

    def start_arm(self, version: str, image: str, color: str) -> Arm:
        self.progress(f"starting {version} ({color}) from {image}")
        arm = self.target.start_arm(version, image, color)
        self.wait_ready(arm)
        return arm

    def start_candidate(self, version: str, image: str, color: str) -> Arm:
        """Start the rollout's candidate, named in the state (container name and labels)
        before its container is created, so that recovery after a SIGKILL at any instant
        knows it and removes it."""
        rollout = self.state.rollout
        assert rollout is not None  # noqa: S101 - begin() set it  # nosec B101
        name = self.target.container_name(version, color)
        rollout.candidate = Arm(version=version, image=image, container=name, port=0, color=color)
        self.save("candidate starting", version, detail=f"creating {name}")
        checkpoint("before-create")
        self.progress(f"starting {version} ({color}) from {image}")
        arm = self.target.start_arm(version, image, color)
        rollout.candidate = arm
        self.save()
        checkpoint("after-create")
        self.wait_ready(arm)
        checkpoint("candidate-ready")
        return arm

    def wait_ready(self, arm: Arm, timeout: float = READY_TIMEOUT) -> None:
        deadline = self.clock.monotonic() + timeout
        last = "no answer"
        checks = 0
        while self.clock.monotonic() < deadline:
            ready, last = self.target.readiness(arm)
            if ready:
                return
            checks += 1
            if checks % 10 == 0 and not self.target.arm_running(arm):
                break
            self.clock.sleep(0.2)
        logs = self.target.arm_logs(arm, tail=20)
        self.target.remove_arm(arm)
        raise GateFailed(
            f"{arm.container} ({arm.version}) did not become ready: {last}",
            problems=[f"log: {line}" for line in logs.splitlines()[-10:]],
            hint="check that the image serves /readyz on MLCD_PORT (mlcd serve does)",
        )

    def drop(self, arm: Arm) -> None:
        """Remove an arm's container once no router worker may still be talking to it."""
        self.target.remove_arm(arm)

    # ------------------------------------------------------------------ router

    def route(
        self, mode: Mode, primary: tuple[tuple[Arm, int], ...], shadow: Arm | None = None
    ) -> None:
        self.state.router_generation += 1
        self.state.router_port = self.target.router_address[1]
        checkpoint("before-route")
        routes = self.target.route(Route(mode, primary, shadow), self.state.router_generation)
        checkpoint("after-route")
        self.save("router", detail=routes)

    def route_to(self, arm: Arm) -> None:
        self.route("single", ((arm, 1),))

    # ------------------------------------------------------------------ recovery

    def reconcile(self) -> list[str]:
        """Bring a state left by a killed process back to stable serving all traffic."""
        notes: list[str] = []
        st = self.state
        rollout = st.rollout
        me = self.target.owner()
        if (
            rollout is not None
            and rollout.phase == "progressing"
            and (rollout.owner_pid, rollout.owner_start, rollout.owner_host)
            != (me.pid, me.start, me.host)
        ):
            # we hold the environment's lock: whoever started this rollout is gone
            notes.append(
                f"found the rollout of {rollout.version} interrupted (its process, pid "
                f"{rollout.owner_pid}{' on ' + rollout.owner_host if rollout.owner_host else ''}"
                ", is gone): restoring stable"
            )
            self.progress(notes[-1])
            if st.stable is not None:
                self._ensure_stable_running()
                self.route_to(st.stable)
            undone = "interrupted rollout undone"
            cand = rollout.candidate
            if cand is not None and (st.stable is None or cand.container != st.stable.container):
                existed = self.target.arm_state(cand) is not None
                self.drop(cand)
                undone += (
                    f"; removed its candidate container {cand.container}"
                    if existed
                    else f"; its candidate {cand.container} had not been created"
                )
                notes.append(undone[len("interrupted rollout undone; ") :])
            st.rollout = None
            live = "stable serves all traffic" if st.stable is not None else "nothing is live"
            self.save("recovered", rollout.version, detail=f"{undone}; {live}")
        if st.stable is not None and st.rollout is None:
            if not self.target.arm_running(st.stable):
                notes.append(f"stable container {st.stable.container} was not running: restarted")
                self._ensure_stable_running()
                self.route_to(st.stable)
                self.save("recovered", st.stable.version, detail="stable container restarted")
            elif not self.target.router_running():
                notes.append(f"the router was not running: restarted ({self.target.url})")
                self.route_to(st.stable)
        now = self.clock.time()
        for retired in list(st.retired):
            if retired.remove_after <= now:
                self.drop(retired.arm)
                st.retired.remove(retired)
                self.save(
                    "scaled down", retired.arm.version, detail=f"removed {retired.arm.container}"
                )
        return notes

    def _ensure_stable_running(self) -> None:
        stable = self.state.stable
        assert stable is not None  # noqa: S101 - callers check  # nosec B101
        if self.target.arm_running(stable):
            return
        try:
            self.target.restart_arm(stable)
            self.wait_ready(stable)
        except MlcdError:
            self.state.stable = self.start_arm(stable.version, stable.image, stable.color)
        self.save()

    # ------------------------------------------------------------------ analysis

    def _analyse(
        self,
        stable: Arm,
        candidate: Arm,
        *,
        min_requests: int,
        interval: float,
        duration: float,
        run: AnalysisRun,
        judge_state: JudgeState,
        paired: bool,
        label: str,
        like_for_like: bool = False,
        min_intervals: int = 1,
        max_intervals: int | None = None,
    ) -> _Analysis:
        limits = limits_for(self.spec.section, self.spec.task, min_requests, self.spec.expected)
        policy = StepPolicy(
            min_intervals, max_intervals or self.spec.section.analysis.max_intervals, duration
        )
        progress = StepProgress()
        # made once both arms answer (a dead arm has no address on a docker-host's network:
        # the liveness check below then says which one is down)
        readers: tuple[ArmReader, ArmReader] | None = None
        started = self.clock.monotonic()
        paired_ids: set[str] = set()
        used_ids: set[str] = set()
        baseline_ok = False
        while True:
            if not baseline_ok:
                try:
                    if readers is None:
                        readers = (self.target.reader(stable), self.target.reader(candidate))
                    for reader in readers:
                        reader.start()
                    baseline_ok = True
                except (MetricsError, EnvironmentMissing) as exc:
                    self.progress(f"cannot read metrics yet: {exc}")
            down = self._sleep_watching(interval, stable, candidate)
            if down is stable:
                return self._stable_down(stable, label, run, judge_state)
            if down is candidate:
                state = self.target.arm_state(candidate) or {}
                why = (
                    f"the candidate container {candidate.container} is not running "
                    f"(exit code {state.get('ExitCode', '?')})"
                )
                self._measure("fail", [why], {}, label)
                return _Analysis("failed", why, run.record("fail"), judge_state)
            try:
                stable_window, stable_recent = self._read(readers, 0, baseline_ok)
                cand_window, cand_recent = self._read(readers, 1, baseline_ok)
            except MetricsError as exc:
                run = run.record("error")
                progress = progress.record("error", [str(exc)])
                self._measure("error", [str(exc)], {}, label)
                baseline_ok = False
            else:
                if like_for_like:
                    stable_window, cand_window = common_windows(
                        stable_recent, cand_recent, used_ids
                    )
                pairs = pair_predictions(stable_recent, cand_recent, paired_ids) if paired else None
                judge_state, measurement = judge(
                    judge_state, stable_window, cand_window, limits, pairs=pairs
                )
                run = run.record(measurement.verdict)
                traffic = cand_window.requests > 0 or bool(pairs)
                progress = progress.record(
                    measurement.verdict,
                    measurement.reasons,
                    traffic=traffic,
                    environment=measurement.environment,
                )
                self._measure(
                    measurement.verdict, list(measurement.reasons), dict(measurement.metrics), label
                )
            elapsed = self.clock.monotonic() - started
            action, explanation = step_decision(policy, progress, run, elapsed)
            if action == "failed":
                return _Analysis("failed", explanation, run, judge_state)
            if action == "paused":
                return _Analysis("paused", explanation, run, judge_state)
            if action == "pass":
                return _Analysis("pass", explanation, run, judge_state)

    def _sleep_watching(self, seconds: float, stable: Arm, candidate: Arm) -> Arm | None:
        """Sleep one interval, checking both containers every WATCH_EVERY seconds; the first
        arm found not running (stable first), else None."""
        deadline = self.clock.monotonic() + seconds
        while True:
            self.clock.sleep(max(0.0, min(WATCH_EVERY, deadline - self.clock.monotonic())))
            for arm in (stable, candidate):
                if not self.target.arm_running(arm):
                    return arm
            if self.clock.monotonic() >= deadline:
                return None

    def _stable_down(
        self, stable: Arm, label: str, run: AnalysisRun, judge_state: JudgeState
    ) -> _Analysis:
        """Stable stopped mid-rollout: a fault of its own, not the candidate's test. Traffic
        is held on stable's replacement (restarted, or started again from its image) rather
        than left to fail over to the unvetted candidate, and the rollout is rolled back
        with that reason; when stable cannot be brought back the rollout pauses instead
        (rolling back would remove the one arm that answers)."""
        state = self.target.arm_state(stable) or {}
        why = (
            f"stable is down: its container {stable.container} stopped (exit code "
            f"{state.get('ExitCode', '?')}) during the {label} analysis"
        )
        self.progress(why)
        try:
            self._ensure_stable_running()
            assert self.state.stable is not None  # noqa: S101 - callers check  # nosec B101
            self.route_to(self.state.stable)
        except MlcdError as exc:
            why += f"; it could not be started again ({exc.message})"
            self._measure("error", [why], {}, label)
            return _Analysis("paused", why, run.record("error"), judge_state, fault=True)
        why += (
            f"; restarted it and held all traffic on {self.state.stable.container} "
            "(the candidate was not judged against a dead stable)"
        )
        self._measure("error", [why], {}, label)
        return _Analysis("failed", why, run.record("error"), judge_state, fault=True)

    @staticmethod
    def _read(
        readers: tuple[ArmReader, ArmReader] | None, index: int, baseline_ok: bool
    ) -> tuple[ArmWindow, list[Recent]]:
        if readers is None or not baseline_ok:
            raise MetricsError("no baseline reading of the arms' metrics")
        return readers[index].interval()

    def _measure(
        self, outcome: str, reasons: list[str], metrics: dict[str, Any], label: str
    ) -> None:
        entry = {
            "time": utc_now(),
            "phase": label,
            "outcome": outcome,
            "reasons": reasons[:8],
            "metrics": metrics,
        }
        self.measurements.append(entry)
        self.state.last_analysis = entry
        self.progress(f"{label}: {outcome}" + (f" — {reasons[0]}" if reasons else ""))
        self.target.save_state(self.state)

    def _load(
        self, arms: list[Arm] | None, rps: float | None
    ) -> AbstractContextManager[object] | None:
        """Synthetic traffic to the router (arms None), or to each arm with the same ids."""
        if not rps or not self.spec.rows:
            return None
        me = self.target.owner()
        return self.target.synthetic_load(
            arms, self.spec.rows, rps, id_prefix=f"mlcd-load-{self.spec.env}-{me.pid}"
        )

    # ------------------------------------------------------------------ deploy

    def begin(self, version: str, image: str, strategy: str) -> None:
        me = self.target.owner()
        self.state.rollout = Rollout(
            version=version,
            image=image,
            strategy=strategy,
            phase="progressing",
            owner_pid=me.pid,
            owner_start=me.start,
            owner_host=me.host,
        )
        self.save("rollout started", version, strategy=strategy, image=image)

    def deploy(self, version: str, image: str, strategy: str) -> DeployOutcome:
        st = self.state
        if st.rollout is not None and st.rollout.phase == "paused":
            raise GateFailed(
                f"{self.spec.env} has a rollout of {st.rollout.version} paused for a decision",
                hint=f"mlcd promote {self.spec.env} or mlcd abort {self.spec.env} first",
            )
        if st.stable is not None and st.stable.version == version and st.stable.image == image:
            return DeployOutcome("already live", f"{version} is already live in {self.spec.env}")
        self.begin(version, image, strategy)
        if st.stable is None:
            return self._first(version, image)
        color = "green" if st.stable.color == "blue" else "blue"
        candidate = self.start_candidate(version, image, color)
        self.save(
            "candidate ready",
            version,
            detail=f"{candidate.container} on {self.target.arm_address(candidate)}",
        )
        if strategy == "canary":
            return self._canary(candidate)
        if strategy == "blue-green":
            return self._blue_green(candidate)
        return self._shadow(candidate)

    def _first(self, version: str, image: str) -> DeployOutcome:
        arm = self.start_candidate(version, image, "blue")
        self.route_to(arm)
        self.state.stable = arm
        self.state.rollout = None
        self.state.unrecorded = {"version": version, "strategy": "first"}
        self.save(
            "live",
            version,
            detail="first release in this environment: nothing to compare with, so no analysis",
        )
        return DeployOutcome(
            "deployed",
            f"{version} is live in {self.spec.env} at {self.target.url} (first release "
            "here: nothing to compare with)",
        )

    def _analysis_run(self, *, inconclusive_limit: int | None = None) -> AnalysisRun:
        """A fresh analysis run with the environment's Argo-style limits."""
        a = self.spec.section.analysis
        limit = a.inconclusive_limit if inconclusive_limit is None else inconclusive_limit
        return AnalysisRun(a.failure_limit, limit, a.consecutive_error_limit)

    def _analyse_fresh(
        self,
        load: AbstractContextManager[object] | None,
        stable: Arm,
        candidate: Arm,
        cfg: BlueGreenSection | ShadowSection,
        *,
        duration: float,
        label: str,
    ) -> _Analysis:
        """One analysis from nothing (a new run and judge state) under `load` when there is
        one: a blue-green preview (like for like) or a shadow (paired by request id)."""
        shadow = isinstance(cfg, ShadowSection)
        with load if load is not None else contextlib.nullcontext():
            return self._analyse(
                stable,
                candidate,
                min_requests=cfg.min_requests,
                interval=cfg.interval,
                duration=duration,
                run=self._analysis_run(),
                judge_state=JudgeState(),
                paired=shadow,
                label=label,
                like_for_like=not shadow,
            )

    def _canary(self, candidate: Arm) -> DeployOutcome:
        section = self.spec.section
        cfg = section.canary
        stable = self.state.stable
        rollout = self.state.rollout
        assert stable is not None  # noqa: S101 - deploy() checked it  # nosec B101
        assert rollout is not None  # noqa: S101  # nosec B101
        steps = [w for w in cfg.steps if 0 < w < 100]
        run = self._analysis_run()
        jstate = JudgeState()
        load = self._load(None, section.load_test.rps if section.load_test else None)
        with load if load is not None else contextlib.nullcontext():
            if cfg.shadow_intervals > 0:
                ended, run, jstate = self._shadow_phase(stable, candidate, run, jstate)
                if ended is not None:
                    return ended
            for index, weight in enumerate(steps):
                rollout.step, rollout.weight = index, weight
                self.route("split", ((stable, 100 - weight), (candidate, weight)))
                self.save(
                    "canary step",
                    candidate.version,
                    detail=f"{weight}% of traffic",
                    step=index,
                    weight=weight,
                )
                jstate = jstate.new_step()
                result = self._analyse(
                    stable,
                    candidate,
                    min_requests=cfg.min_requests,
                    interval=cfg.interval,
                    duration=0.0,
                    run=run,
                    judge_state=jstate,
                    paired=False,
                    label=f"canary {weight}%",
                    min_intervals=cfg.min_intervals,
                )
                run, jstate = result.run, result.judge_state
                ended = self._unless_passed(result, "analysis failed")
                if ended is not None:
                    return ended
                self.save(
                    "step passed",
                    candidate.version,
                    detail=f"{weight}% of traffic: {result.explanation}",
                    step=index,
                    weight=weight,
                )
        return self.promote()

    def _shadow_phase(
        self, stable: Arm, candidate: Arm, run: AnalysisRun, jstate: JudgeState
    ) -> tuple[DeployOutcome | None, AnalysisRun, JudgeState]:
        """Mirror all traffic to the candidate before the first canary step.

        The candidate's answers go nowhere; its errors, latency and predictions are judged
        against stable's like a canary's, so the first step starts with the evidence of all
        of the traffic. A failure rolls back (no user saw the candidate); a phase that has not
        passed after `shadow-intervals` goes on to the first step with what it has.
        """
        cfg = self.spec.section.canary
        self.route("mirror", ((stable, 1),), candidate)
        self.save(
            "shadow phase",
            candidate.version,
            detail=f"all inference requests mirrored to the candidate for up to "
            f"{cfg.shadow_intervals} interval(s) before the first step",
        )
        result = self._analyse(
            stable,
            candidate,
            min_requests=cfg.min_requests,
            interval=cfg.interval,
            duration=0.0,
            run=self._analysis_run(inconclusive_limit=10**6),
            judge_state=jstate,
            paired=False,
            label="canary shadow",
            min_intervals=cfg.min_intervals,
            max_intervals=cfg.shadow_intervals,
        )
        if result.verdict == "failed":
            return (
                self.rollback_candidate(f"shadow phase failed: {result.explanation}"),
                run,
                jstate,
            )
        if result.verdict == "paused" and "environment" in result.explanation:
            return self.pause(result.explanation), run, jstate
        note = "passed" if result.verdict == "pass" else "ended without a decision"
        self.progress(f"shadow phase {note}; the first step starts with its evidence")
        return None, run, result.judge_state

    def _blue_green(self, candidate: Arm) -> DeployOutcome:
        section = self.spec.section
        cfg = section.blue_green
        stable = self.state.stable
        assert stable is not None  # noqa: S101  # nosec B101
        rps = section.load_test.rps if section.load_test else cfg.rps
        load = self._load([stable, candidate], rps)
        self.save(
            "preview",
            candidate.version,
            detail=f"{candidate.container} on {self.target.arm_address(candidate)}, analysed for "
            f"{cfg.preview_duration:g}s before the switch",
        )
        result = self._analyse_fresh(
            load, stable, candidate, cfg, duration=cfg.preview_duration, label="preview"
        )
        return self._unless_passed(result, "preview analysis failed") or self.promote()

    def _shadow(self, candidate: Arm) -> DeployOutcome:
        section = self.spec.section
        cfg = section.shadow
        stable = self.state.stable
        assert stable is not None  # noqa: S101  # nosec B101
        self.route("mirror", ((stable, 1),), candidate)
        self.save(
            "shadow",
            candidate.version,
            detail="inference requests mirrored; clients get stable's answers",
        )
        load = self._load(None, section.load_test.rps if section.load_test else None)
        result = self._analyse_fresh(
            load, stable, candidate, cfg, duration=cfg.duration, label="shadow"
        )
        ended = self._unless_passed(result, "shadow blocked from promotion")
        if ended is not None:
            return ended
        if not cfg.promote:
            outcome = self.rollback_candidate("shadow passed; shadow.promote is false")
            outcome.result = "already live"
            outcome.summary = (
                f"shadow {candidate.version} passed its analysis; not promoted "
                "(shadow.promote: false)"
            )
            return outcome
        return self.promote()

    # ------------------------------------------------------------------ endings

    def _unless_passed(self, result: _Analysis, failed: str) -> DeployOutcome | None:
        """The ending of an analysis that did not pass (rolled back or paused), else None."""
        if result.verdict == "failed":
            why = result.explanation if result.fault else f"{failed}: {result.explanation}"
            return self.rollback_candidate(why)
        if result.verdict == "paused":
            return self.pause(result.explanation)
        return None

    def pause(self, explanation: str) -> DeployOutcome:
        rollout = self.state.rollout
        assert rollout is not None  # noqa: S101  # nosec B101
        env = self.spec.env
        rollout.phase = "paused"
        rollout.waiting_for = (
            f"a decision: `mlcd promote {env}` to complete the rollout of {rollout.version}, "
            f"or `mlcd abort {env}` to roll it back"
        )
        self.save("paused", rollout.version, detail=explanation)
        return DeployOutcome(
            "paused",
            f"paused: {explanation}; waiting for {rollout.waiting_for}",
            reasons=[explanation],
            waiting_for=rollout.waiting_for,
        )

    def rollback_candidate(self, why: str) -> DeployOutcome:
        """Traffic back to stable first, then the candidate removed."""
        st = self.state
        rollout = st.rollout
        assert rollout is not None  # noqa: S101  # nosec B101
        self.save("rolling back", rollout.version, detail=why)
        if st.stable is not None:
            self._ensure_stable_running()
            self.route_to(st.stable)
            self.save(
                "traffic on stable",
                st.stable.version,
                detail=f"all traffic to {st.stable.container}",
            )
        if rollout.candidate is not None:
            self.drop(rollout.candidate)
            self.save("candidate removed", rollout.version, detail=rollout.candidate.container)
        st.rollout = None
        self.save("rolled back", rollout.version, detail=why)
        live = st.stable.version if st.stable else "nothing"
        return DeployOutcome(
            "rolled back",
            f"rolled back {rollout.version}: {why}; {live} serves all traffic",
            reasons=[why],
        )

    def promote(self) -> DeployOutcome:
        """Send all traffic to the candidate; the old stable is retired."""
        st = self.state
        rollout = st.rollout
        assert rollout is not None  # noqa: S101 - callers check  # nosec B101
        assert rollout.candidate is not None  # noqa: S101  # nosec B101
        candidate = rollout.candidate
        old = st.stable
        self.route_to(candidate)
        st.stable = candidate
        st.rollout = None
        if old is not None:
            st.previous = [*st.previous, old][-PREVIOUS_KEPT:]
            delay = self.spec.section.blue_green.scale_down_delay
            if rollout.strategy != "blue-green":
                delay = 0.0
            st.retired.append(Retired(old, self.clock.time() + delay))
        # recorded in the model registry by the caller; kept here until it is, so that a
        # process killed during the post-switch watch leaves a record to finish (reconcile)
        st.unrecorded = {"version": candidate.version, "strategy": rollout.strategy}
        self.save(
            "promoted",
            candidate.version,
            detail=f"all traffic to {candidate.container}",
            strategy=rollout.strategy,
        )
        if old is not None and rollout.strategy == "blue-green":
            back = self._watch_after_switch(old, candidate, rollout)
            if back is not None:
                return back
        self._scale_down(force=True)
        return DeployOutcome(
            "promoted",
            f"{candidate.version} is live in {self.spec.env} "
            f"({rollout.strategy}); {old.version if old else 'nothing'} retired",
        )

    def _watch_after_switch(self, old: Arm, new: Arm, rollout: Rollout) -> DeployOutcome | None:
        """Keep the old version up for scale-down-delay; switch back at once if the new fails."""
        section = self.spec.section
        delay = section.blue_green.scale_down_delay
        if delay <= 0:
            return None
        run = self._analysis_run(inconclusive_limit=10**6)
        limits = limits_for(section, self.spec.task, section.blue_green.min_requests)
        reader: ArmReader = self.target.reader(new)
        interval = min(section.blue_green.interval, delay)
        deadline = self.clock.monotonic() + delay
        jstate = JudgeState()
        with contextlib.suppress(MetricsError):
            reader.start()
        while self.clock.monotonic() < deadline:
            checkpoint("in-watch")
            self.clock.sleep(max(0.0, min(interval, deadline - self.clock.monotonic())))
            alive = self.target.arm_running(new)
            if alive:
                try:
                    window, _ = reader.interval()
                except MetricsError as exc:
                    run = run.record("error")
                    self._measure("error", [str(exc)], {}, "after switch")
                    if run.phase != "error":
                        continue
                else:
                    jstate, m = judge(jstate, ArmWindow(), window, limits)
                    run = run.record(m.verdict)
                    self._measure(m.verdict, list(m.reasons), dict(m.metrics), "after switch")
            if not alive or run.phase in ("failed", "error"):
                why = "the new container stopped" if not alive else run.explain()
                self.save("switching back", old.version, detail=why)
                self.route_to(old)
                self.state.stable = old
                self.state.previous = [
                    p for p in self.state.previous if p.container != old.container
                ]
                self.state.retired = [
                    r for r in self.state.retired if r.arm.container != old.container
                ]
                self.state.unrecorded = {}
                self.drop(new)
                self.save("rolled back", new.version, detail=why)
                return DeployOutcome(
                    "rolled back",
                    f"switched back to {old.version} after the switch: {why}",
                    reasons=[why],
                )
        _ = rollout
        return None

    def _scale_down(self, *, force: bool = False) -> None:
        now = self.clock.time()
        for retired in list(self.state.retired):
            if force or retired.remove_after <= now:
                self.drop(retired.arm)
                self.state.retired.remove(retired)
                self.save(
                    "scaled down", retired.arm.version, detail=f"removed {retired.arm.container}"
                )

    # ------------------------------------------------------------------ commands

    def rollback_previous(self) -> DeployOutcome:
        """`mlcd rollback`: back to the release that was live before the current one."""
        st = self.state
        if st.rollout is not None:
            return self.rollback_candidate("rollback requested")
        if st.stable is None:
            raise GateFailed(f"nothing is live in {self.spec.env}: nothing to roll back")
        if not st.previous:
            raise GateFailed(
                f"{self.spec.env} has no earlier release to go back to "
                f"({st.stable.version} is the only one it ran)"
            )
        target = st.previous[-1]
        current = st.stable
        self.save("rollback started", target.version, detail=f"from {current.version}")
        kept = next((r for r in st.retired if r.arm.container == target.container), None)
        if kept is not None and self.target.arm_running(target):
            arm = target
            st.retired.remove(kept)
        else:
            color = "green" if current.color == "blue" else "blue"
            arm = self.start_arm(target.version, target.image, color)
        self.route_to(arm)
        st.stable = arm
        st.previous = st.previous[:-1]
        self.save("traffic on previous", arm.version, detail=f"all traffic to {arm.container}")
        self.drop(current)
        self.save("rolled back", current.version, detail=f"{arm.version} is live again")
        return DeployOutcome(
            "rolled back", f"{self.spec.env} is back on {arm.version} (was {current.version})"
        )

    def abort(self) -> DeployOutcome:
        if self.state.rollout is None:
            raise GateFailed(f"{self.spec.env} has no rollout in progress to abort")
        return self.rollback_candidate("aborted by `mlcd abort`")

    def promote_paused(self) -> DeployOutcome:
        rollout = self.state.rollout
        if rollout is None or rollout.phase != "paused":
            raise GateFailed(
                f"{self.spec.env} has no rollout paused for a decision"
                + (f" (the rollout of {rollout.version} is {rollout.phase})" if rollout else "")
            )
        me = self.target.owner()
        rollout.phase, rollout.owner_pid = "progressing", me.pid
        rollout.owner_start, rollout.owner_host = me.start, me.host
        self.save("promote requested", rollout.version)
        return self.promote()

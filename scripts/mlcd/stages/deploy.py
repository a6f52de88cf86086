"""`mlcd deploy ENV`, `status`, `rollback`, `promote` and `abort`: controlled rollouts.

`deploy` checks the gates (release, verdict, scan, `requires:`), takes the environment's lock,
restores a consistent state if an earlier process was killed, and rolls the release out by
the environment's strategy through the environment's target (`mlcd.rollout.targets`): the
controller (`mlcd.rollout.controller`) drives a `local` or `docker-host` target, and the
`kubernetes` target hands the rollout to Argo Rollouts and waits for its outcome.
Results go to `<out>/deploy-<env>/` (and `rollback-<env>/`, `promote-<env>/`, `abort-<env>/`),
written only by a command that acted on the environment: one refused before anything moved
(an empty or unknown `--release`, failed gates, the lock held by another command) writes
`<command>-<env>-refused/` instead, leaving the environment's last result alone; a deploy
interrupted by SIGTERM or SIGINT undoes its rollout and records `interrupted`, naming what it
undid.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any, Protocol

from mlcd import releases
from mlcd.config import EnvironmentSection
from mlcd.context import Command, Context
from mlcd.contracts import DeployDetails, train_files
from mlcd.environment import Environment
from mlcd.errors import GateFailed, MlcdError, UserInputError
from mlcd.evidence import StageOutcome, StageResult, require_writable, utc_now
from mlcd.registry import CHAMPION, open_registry
from mlcd.rollout import gates
from mlcd.rollout import plan as plan_mod
from mlcd.rollout.controller import Controller, DeployOutcome, EnvSpec
from mlcd.rollout.loadgen import holdout_rows
from mlcd.rollout.notify import Notifier, webhooks
from mlcd.rollout.plan import Plan, limits_for
from mlcd.rollout.state import LockInfo, LockRefused, holder_alive, holder_running
from mlcd.rollout.targets import ArgoDeployer, Target, open_target, refuse_ephemeral
from mlcd.signing import verify as signed_chain

STRATEGIES = ("canary", "blue-green", "shadow")
# the outcomes of a rollout that passed, on every target (Argo's `promoted` included)
_PASSING = ("promoted", "deployed", "already live")


# --------------------------------------------------------------------------------------
# Where things are


def _rows(ctx: Context, section: EnvironmentSection, strategy: str) -> list[dict[str, Any]]:
    needs = section.load_test is not None or strategy == "blue-green"
    path = train_files(ctx.bundle).holdout
    if not path.is_file():
        if needs:
            raise UserInputError(
                f"this rollout sends held-out rows during analysis and {path} does not exist",
                hint="run `mlcd train` first (or `mlcd run`), with the same --out",
            )
        return []
    return holdout_rows(path, ctx.config.model.target)


def controller(
    ctx: Context, environment: Environment, target: Target, strategy: str | None = None
) -> Controller:
    section = environment.section
    chosen = strategy or section.strategy
    spec = EnvSpec(
        project=environment.project,
        env=environment.name,
        section=section,
        task=ctx.config.model.task,
        rows=_rows(ctx, section, chosen) if strategy is not None else [],
    )
    return Controller(spec, target, ctx.progress)


def record_pending(ctx: Context, ctl: Controller) -> list[str]:
    """Record in the model registry a release that went live but was not recorded yet
    (the deploy that made it live was killed, e.g. during blue/green's post-switch watch)."""
    st = ctl.state
    pending = st.unrecorded
    if not pending or st.rollout is not None:
        return []
    if st.stable is None or st.stable.version != pending.get("version"):
        st.unrecorded = {}
        ctl.save()
        return []
    environment = ctx.environment(ctl.spec.env)  # resolved once by this command
    registry = open_registry(ctx.loaded)
    release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, st.stable.version)
    line = gates.record_live(
        ctx.loaded, environment, release, str(pending.get("strategy", "")), registry
    )
    st.unrecorded = {}
    ctl.save("recorded", release.version, detail="live and healthy, in the model registry")
    return [line]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM (a cancelled CI job) during a command that changes an
    environment: the command undoes what it started, records `interrupted`, and exits 130."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def _signals_handled(handler: Any) -> Iterator[None]:
    """SIGTERM and SIGINT go to `handler` (a function or SIG_IGN) while the block runs; the
    previous handlers come back after it (nothing changes off the main thread)."""
    try:
        previous = [signal.signal(s, handler) for s in _SIGNALS]
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in zip(_SIGNALS, previous, strict=True):
            signal.signal(sig, old)


def _signals_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGINT raise `Interrupted` naming the signal, so the rollout is undone."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    return _signals_handled(handler)


def _signals_ignored() -> contextlib.AbstractContextManager[None]:
    """While an interrupted command undoes its work, a second signal does not cut it short."""
    return _signals_handled(signal.SIG_IGN)


def _outcome(
    stage: str,
    ctl: Controller,
    result: DeployOutcome,
    reasons: list[str],
    details: dict[str, Any],
) -> StageOutcome:
    passed = result.result in _PASSING
    notifier = ctl.on_event if isinstance(ctl.on_event, Notifier) else None
    if notifier is not None:
        notifier.close()
    judged = [m for m in ctl.measurements if m["metrics"] and m["phase"] != "after switch"]
    last = judged[-1]["metrics"] if judged else {}
    state = ctl.state
    details = {
        **details,
        "outcome": result.result,
        "live": asdict(state.stable) if state.stable else None,
        "url": ctl.target.url,
        "router": ctl.target.url.split("://", 1)[-1],
        "state_file": ctl.target.state_location,
        "measurements": ctl.measurements,
        **({"waiting_for": result.waiting_for} if result.waiting_for else {}),
        **({"notifications": notifier.record()} if notifier is not None else {}),
    }
    details = DeployDetails.model_validate(details).dump()
    md = [f"### {'✅' if passed else '❌'} {stage}: {result.summary}", ""]
    md += [f"- {r}" for r in [*reasons, *result.reasons]]
    if notifier is not None and notifier.events:
        md += ["", "#### Events", "", *[f"- {line}" for line in notifier.log_lines()]]
        failed = [d for d in notifier.deliveries if not d["delivered"]]
        if failed:
            md += ["", f"{len(failed)} webhook notification(s) not delivered:"]
            md += [f"- {d['webhook']}: {d['event']}: {d['error']}" for d in failed[:10]]
    if ctl.measurements:
        md += [
            "",
            "| interval | phase | outcome | canary requests | first reason |",
            "|---:|---|---|---:|---|",
        ]
        for i, m in enumerate(ctl.measurements, 1):
            first = (m["reasons"] or [""])[0].replace("|", "\\|")
            md.append(
                f"| {i} | {m['phase']} | {m['outcome']} | "
                f"{m['metrics'].get('canary_requests', '')} | {first} |"
            )
    return StageOutcome(
        status="pass" if passed else "fail",
        summary=result.summary,
        reasons=[*reasons, *result.reasons],
        metrics={k: v for k, v in last.items() if v is not None},
        details=details,
        markdown="\n".join(md) + "\n",
    )


# --------------------------------------------------------------------------------------
# deploy


@dataclass
class _Checked:
    """What a deploy checked before anything moved: the release, the gates, the details."""

    release: gates.Release
    report: gates.GateReport
    strategy: str
    details: dict[str, Any]
    signing_failures: list[str]


def check_release_argument(release: str | None) -> None:
    """`--release ''` (an unset CI variable) names nothing: exit 2 rather than a rollout
    of whatever is newest."""
    if release is not None and not release.strip():
        raise UserInputError(
            "--release is empty: it names no release",
            hint="pass a release (e.g. --release 0.1.3) or a model version (--release v2), "
            "or leave --release out for the run's release (else the newest that passed "
            "every `requires:`)",
        )


def _check(
    ctx: Context, environment: Environment, strategy: str | None, wanted: str | None
) -> _Checked:
    env, section = environment.name, environment.section
    chosen = strategy or section.strategy
    registry = open_registry(ctx.loaded)
    release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, wanted)
    details: dict[str, Any] = {
        "env": env,
        "version": release.version,
        "image": release.image,
        "strategy": chosen,
        "target": section.target,
    }
    report = gates.check(release, env, section.requires)
    failures: list[str] = []
    if report.passed:
        # the signatures, before anything starts (mlcd.signing.verify)
        signed = signed_chain.deploy_gate(
            ctx.loaded, registry, release.version, release.image, section.requires
        )
        details["signing"] = signed.details
        report.reasons.extend(signed.reasons)
        failures = list(signed.failures) if not signed.passed else []
    return _Checked(release, report, chosen, details, failures)


def _gates_refusal(env: str, checked: _Checked) -> StageOutcome:
    release, report = checked.release, checked.report
    if report.passed and checked.signing_failures:
        return StageOutcome(
            status="fail",
            summary=f"{release.version} cannot go to {env}: " + "; ".join(checked.signing_failures),
            reasons=[*checked.signing_failures, *report.reasons],
            details=DeployDetails.model_validate(
                {**checked.details, "outcome": "refused: signature"}
            ).dump(),
        )
    return StageOutcome(
        status="fail",
        summary=f"{release.version} cannot go to {env}: " + "; ".join(report.failures),
        reasons=[*report.failures, *report.reasons],
        details=DeployDetails.model_validate(
            {**checked.details, "outcome": "refused by gates"}
        ).dump(),
    )


def _interrupted(
    ctx: Context, stage: str, ctl: Controller, signame: str, *, checked: _Checked, notes: list[str]
) -> StageOutcome:
    """Undo what the interrupted deploy started and say what was undone."""
    st = ctl.state
    rollout = st.rollout
    undone: list[str] = []
    with _signals_ignored():
        if rollout is not None and rollout.phase == "progressing":
            candidate = rollout.candidate.container if rollout.candidate else None
            ctl.rollback_candidate(f"interrupted ({signame})")
            live = st.stable
            undone.append(
                f"rolled back {rollout.version}"
                + (f": candidate {candidate} removed" if candidate else ": no candidate started")
                + (f"; {live.version} ({live.container}) serves all traffic" if live else "")
            )
        elif st.unrecorded and st.stable is not None:
            # interrupted after the switch (blue/green's watch): the release is live
            undone += record_pending(ctx, ctl)
            undone.append(
                f"nothing undone: {st.stable.version} was already live "
                f"({st.stable.container}) when {signame} came"
            )
        else:
            serving = f"{st.stable.version} is live" if st.stable else "nothing is live"
            undone.append(f"nothing to undo: no rollout had started; {serving}")
    summary = f"interrupted by {signame}: " + "; ".join(undone)
    details = {**checked.details, "outcome": "interrupted", "signal": signame, "undone": undone}
    outcome = _outcome(
        stage,
        ctl,
        DeployOutcome("rolled back", summary, reasons=undone),
        [*checked.report.reasons, *notes],
        details,
    )
    outcome.details["outcome"] = "interrupted"
    outcome.markdown = outcome.markdown.replace(f"❌ {stage}:", f"⏹ {stage}:", 1)
    return outcome


@dataclass
class _Run:
    """What happened to a deploy's body: whether it started, and the signal that stopped it."""

    started: bool = False
    interrupt: Interrupted | None = None
    accept_plan: bool = False
    plan: Plan | None = None


def _rollout_body(
    ctx: Context, stage: str, checked: _Checked, ctl: Controller, run: _Run
) -> StageOutcome:
    run.started = True
    notes: list[str] = []
    if run.plan is not None:
        checked.details["plan"] = run.plan.as_json()
        notes += [f"plan: {line}" for line in run.plan.lines()]
    ctl.spec.expected = gates.expected_predictions(checked.release.prediction_shift)
    try:
        notes += [*ctl.reconcile(), *record_pending(ctx, ctl)]
        result = ctl.deploy(checked.release.version, checked.release.image, checked.strategy)
    except Interrupted as interrupt:
        run.interrupt = interrupt
        return _interrupted(ctx, stage, ctl, interrupt.signame, checked=checked, notes=notes)
    notes += record_pending(ctx, ctl)
    return _outcome(stage, ctl, result, [*checked.report.reasons, *notes], checked.details)


def rollout_plan(
    ctx: Context, section: EnvironmentSection, ctl: Controller, *, accept: bool
) -> Plan | None:
    """The canary's plan at the environment's traffic, printed; exit 2 when a step cannot
    decide within max-intervals and neither --accept-plan nor analysis.accept-slow-plan says
    to go ahead (rollout/plan.py)."""
    traffic = plan_mod.traffic_of(section)
    if traffic is None:
        # no load test, no expected-rps: the rate stable serves now
        seconds = min(section.canary.interval, plan_mod.MEASURE_SECONDS)
        ctx.progress(f"plan: measuring stable's request rate for {seconds:g}s")
        traffic = plan_mod.traffic_of(section, ctl.stable_rps(seconds))
    if traffic is None:
        ctx.progress(
            "plan: no traffic figure (no load-test, no analysis.expected-rps, no requests on "
            "stable): cannot say how long the steps take"
        )
        return None
    # the plan's traffic has no prediction shift: evaluation's expectation is left out
    limits = limits_for(section, ctl.spec.task, section.canary.min_requests)
    plan = plan_mod.estimate(section, traffic, limits)
    for line in plan.lines():
        ctx.progress(f"plan: {line}")
    if not plan.decides and not (accept or section.analysis.accept_slow_plan):
        raise UserInputError(
            f"the plan of {ctl.spec.env} cannot decide within max-intervals "
            f"{section.analysis.max_intervals}: " + "; ".join(plan.lines()),
            hint="more traffic (load-test.rps), longer canary.interval, canary.shadow-intervals, "
            "fewer or larger steps, wider tolerances; or go ahead anyway with "
            "`mlcd deploy --accept-plan` or analysis.accept-slow-plan: true",
        )
    return plan


@contextmanager
def locked(
    ctx: Context,
    environment: Environment,
    open_engine: Callable[[], Target],
    command: str,
    strategy: str | None = None,
) -> Iterator[Controller]:
    """The environment's controller with its lock held and its state loaded."""
    target = open_engine()
    notifier: Notifier | None = None
    try:
        ctl = controller(ctx, environment, target, strategy)
        # before the lock: a webhook whose url-env is not set is exit 2 before anything moves
        notifier = notifier_for(ctx, environment, command, target.url)
        ctl.on_event = notifier
        target.acquire(f"mlcd {command} {environment.name}")
        try:
            ctl.load()
            yield ctl
        finally:
            target.release()
    finally:
        if notifier is not None:
            notifier.close()  # waits at most one delivery's worst case
        target.close()


def notifier_for(ctx: Context, environment: Environment, command: str, url: str) -> Notifier:
    """The environment's notifier: the top-level `notify:` webhooks and its own."""
    env, section = environment.name, environment.section
    hooks = [
        *webhooks(ctx.config.notify, where="notify"),
        *webhooks(section.notify, where=f"environments.{env}.notify"),
    ]
    return Notifier(
        hooks, project=ctx.config.project, env=env, command=command, url=url, log=ctx.progress
    )


def _recorded(ctx: Context, stage: str, exc: MlcdError) -> StageResult:
    """A failure before the stage's body ran, recorded as the stage's result."""

    def body() -> StageOutcome:
        raise exc

    return ctx.run_stage(stage, body)


def existing_release(ctx: Context, section: EnvironmentSection, release: str | None) -> str | None:
    """A deploy of an existing release (workflow_dispatch, a fresh clone) when this run folder
    made none: the newest release that passed every `requires:` unless one is named (a
    model version stands for its newest release), with its evidence restored (held-out rows,
    verdict, scan) — before the controller is built, since the rollout's synthetic traffic is
    made from those rows."""
    if ctx.bundle.read("release") is not None:
        return release
    registry = open_registry(ctx.loaded)
    if release:
        release = releases.resolve(registry, release)
    release = release or releases.default_version(registry, section.requires)
    if release and releases.SEMVER.match(release):
        releases.restore_evidence(registry, release, ctx.bundle.root)
    return release


def stage(
    ctx: Context,
    env: str,
    *,
    strategy: str | None = None,
    release: str | None = None,
    accept_plan: bool = False,
) -> StageResult:
    """One deploy. The environment's record (`deploy-<env>/`) is written only by a deploy
    that acted on the environment; one refused before anything moved (a bad argument, an
    unknown release, failed gates, the lock held by another command) records its refusal
    in `deploy-<env>-refused/` beside it, so the last rollout's evidence stays."""
    environment = ctx.environment(env)
    name, refused = environment.stage("deploy"), environment.refused("deploy")
    try:
        # what the machine lacks first: a read-only state folder stops every deploy (exit 3)
        for folder, what, hint in ctx.writable_for(name):
            require_writable(folder, what, hint=hint)
        check_release_argument(release)
        refuse_ephemeral(environment)
        chosen = existing_release(ctx, environment.section, release)
        checked = _check(ctx, environment, strategy, chosen)
    except MlcdError as exc:
        return _recorded(ctx, refused, exc)
    if not checked.report.passed or checked.signing_failures:
        return ctx.run_stage(refused, lambda: _gates_refusal(env, checked))
    return deployer(ctx, environment).deploy(checked, accept_plan=accept_plan)


def _progress_printer(ctx: Context) -> None:
    if ctx.fmt == "text" and not ctx.in_pipeline:
        start = time.monotonic()

        def show(message: str) -> None:
            sys.stderr.write(f"  [{time.monotonic() - start:6.1f}s] {message}\n")
            sys.stderr.flush()

        ctx.progress = show


def _env_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", metavar="ENV", help="an environment of mlcd.yaml")


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    _env_argument(parser)
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default=None, help="override the environment's strategy"
    )
    parser.add_argument(
        "--release",
        metavar="VERSION",
        default=None,
        help="the release to deploy (default: the run's release, else the newest release that "
        "passed every `requires:` of ENV)",
    )
    parser.add_argument(
        "--accept-plan",
        action="store_true",
        help="go ahead when the rollout plan says a canary step cannot decide within "
        "max-intervals (it would pause)",
    )


def _deploy_run(ctx: Context, args: argparse.Namespace) -> int:
    if args.strategy == "":
        args.strategy = None
    _progress_printer(ctx)
    return ctx.conclude(
        stage(
            ctx,
            args.env,
            strategy=args.strategy,
            release=args.release,
            accept_plan=args.accept_plan,
        )
    )


# --------------------------------------------------------------------------------------
# rollback / promote / abort


STOP_WAIT = 300.0  # seconds `mlcd abort` waits for a running deploy to undo its rollout


def _running_deploy(holder: LockInfo | None, env: str) -> LockInfo | None:
    """The lock's holder when it is a live `mlcd deploy ENV` on this machine (one that
    `mlcd abort` can stop), else None."""
    if holder is None or holder.command != f"mlcd deploy {env}":
        return None
    if holder.host != socket.gethostname() or not holder_alive(holder.pid, holder.start):
        return None
    return holder


def stop_running_deploy(holder: LockInfo, progress: Callable[[str], None]) -> str:
    """SIGTERM a running deploy (it rolls back its candidate and records `interrupted`) and
    wait until it has exited."""
    progress(f"stopping the running deploy (pid {holder.pid}) with SIGTERM")
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while holder_running(holder.pid, holder.start):
        if time.monotonic() > deadline:
            raise GateFailed(
                f"the running deploy (pid {holder.pid}) did not exit within {STOP_WAIT:g} s "
                "of SIGTERM",
                hint="see its output; `mlcd status` restores stable once it has exited",
            )
        time.sleep(0.2)
    return (
        f"stopped the running deploy (pid {holder.pid}, since {holder.acquired}) with SIGTERM: "
        "it rolled its candidate back itself (its deploy result says `interrupted`)"
    )


def _decision(ctx: Context, env: str, name: str) -> StageResult:
    """`rollback`, `promote` or `abort`. A command refused by the lock records the refusal
    beside its own result (`<name>-<env>-refused/`)."""
    environment = ctx.environment(env)
    try:
        refuse_ephemeral(environment)
    except MlcdError as exc:
        return _recorded(ctx, environment.refused(name), exc)
    return deployer(ctx, environment).decide(name)


def _rollback_run(ctx: Context, args: argparse.Namespace) -> int:
    _progress_printer(ctx)
    return ctx.conclude(_decision(ctx, args.env, "rollback"))


def _promote_run(ctx: Context, args: argparse.Namespace) -> int:
    _progress_printer(ctx)
    return ctx.conclude(_decision(ctx, args.env, "promote"))


def _abort_run(ctx: Context, args: argparse.Namespace) -> int:
    _progress_printer(ctx)
    return ctx.conclude(_decision(ctx, args.env, "abort"))


# --------------------------------------------------------------------------------------
# status


def status(ctx: Context, env: str) -> dict[str, Any]:
    """The environment's state, after restoring it if a killed process left it half-done."""
    return deployer(ctx, ctx.environment(env)).status()


def _status_text(data: dict[str, Any]) -> list[str]:
    env = data["env"]
    lines = [f"{env}: {data.get('target_line') or data['target'] + ' target'}"]
    lines += [f"  note: {n}" for n in data["notes"]]
    stable = data.get("stable")
    if stable:
        lines.append(
            f"  live: {stable['version']} ({stable['container']}, {stable['image']}) at "
            f"{data.get('url', '')}"
        )
    else:
        lines.append("  live: nothing yet")
    rollout = data.get("rollout")
    if rollout:
        line = f"  rolling out: {rollout['version']} by {rollout['strategy']}, {rollout['phase']}"
        if rollout["strategy"] == "canary":
            line += f", step {rollout['step'] + 1} at {rollout['weight']}%"
        lines.append(line)
        if rollout.get("waiting_for"):
            lines.append(f"  waiting for {rollout['waiting_for']}")
    if data.get("busy"):
        lines.append(f"  in use by {data['busy']}")
    if data.get("previous"):
        lines.append("  previous: " + ", ".join(a["version"] for a in data["previous"]))
    last = data.get("last_analysis")
    if last:
        first = (last.get("reasons") or [""])[0]
        lines.append(
            f"  last analysis ({last['time']}, {last['phase']}): {last['outcome']}"
            + (f" — {first}" if first else "")
        )
    history = data.get("history", [])
    if history:
        lines.append("  history:")
        for h in history[-12:]:
            detail = h.get("detail", "")
            lines.append(f"    {h['time']}  {h['event']:<18} {h.get('version', ''):<8} {detail}")
    return lines


def _status_run(ctx: Context, args: argparse.Namespace) -> int:
    data = status(ctx, args.env)
    if ctx.fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=ctx.stream)
    else:
        print("\n".join(_status_text(data)), file=ctx.stream)
    return 0


# --------------------------------------------------------------------------------------
# the environment's deployer: one per kind of reconciler, opened by the target factory


class Deployer(Protocol):
    """What the commands ask of an environment, whoever moves its traffic: the container
    engines' shared controller (`_Engines`) or Argo Rollouts (`_Argo`)."""

    def deploy(self, checked: _Checked, *, accept_plan: bool) -> StageResult: ...

    def decide(self, command: str) -> StageResult: ...

    def status(self) -> dict[str, Any]: ...

    def down(self, record: Callable[[list[str]], StageOutcome]) -> StageResult: ...


_ACTS: dict[str, Callable[[Controller], DeployOutcome]] = {
    "rollback": Controller.rollback_previous,
    "promote": Controller.promote_paused,
    "abort": Controller.abort,
}


class _Engines:
    """local and docker-host: the shared controller over the environment's `Target`, under
    the environment's lock."""

    def __init__(
        self, ctx: Context, environment: Environment, open_engine: Callable[[], Target]
    ) -> None:
        self.ctx = ctx
        self.environment = environment
        self.open_engine = open_engine

    def _locked(
        self, command: str, strategy: str | None = None
    ) -> contextlib.AbstractContextManager[Controller]:
        return locked(self.ctx, self.environment, self.open_engine, command, strategy)

    def deploy(self, checked: _Checked, *, accept_plan: bool) -> StageResult:
        ctx, environment = self.ctx, self.environment
        name, refused = environment.stage("deploy"), environment.refused("deploy")
        run = _Run(accept_plan=accept_plan)
        with _signals_interrupt():
            try:
                with self._locked("deploy", checked.strategy) as ctl:
                    # a plan that cannot decide is refused before anything moves
                    if checked.strategy == "canary" and ctl.state.stable is not None:
                        run.plan = rollout_plan(
                            ctx, environment.section, ctl, accept=run.accept_plan
                        )
                    result = ctx.run_stage(
                        name, lambda: _rollout_body(ctx, name, checked, ctl, run)
                    )
            except MlcdError as exc:
                if run.started:  # recorded in deploy-<env>/ by run_stage
                    raise
                return _recorded(ctx, refused, exc)
        if run.interrupt is not None:
            raise run.interrupt
        return result

    def decide(self, command: str) -> StageResult:
        """`abort` stops a deploy that is running on this machine (SIGTERM: it undoes its
        rollout) and then takes over."""
        ctx, environment = self.ctx, self.environment
        env, stage_name = environment.name, environment.stage(command)
        act = _ACTS[command]

        def body(ctl: Controller, stopped: str | None) -> StageOutcome:
            notes = [*ctl.reconcile(), *record_pending(ctx, ctl)]
            if stopped is not None and ctl.state.rollout is None:
                notes.insert(0, stopped)
                live = ctl.state.stable
                result = DeployOutcome(
                    "deployed",
                    "aborted the running deploy; "
                    + (f"{live.version} serves all traffic" if live else "nothing is live"),
                )
            else:
                result = act(ctl)
            live = ctl.state.stable
            if command in ("rollback", "promote") and live is not None:
                registry = open_registry(ctx.loaded)
                release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, live.version)
                if command == "promote":
                    gates.record_live(ctx.loaded, environment, release, "promote", registry)
                elif environment.holds_champion:
                    registry.set_alias(CHAMPION, release.model_version)
            if command != "promote" and result.result == "rolled back":
                result.result = "deployed"  # the user asked for it: done
            return _outcome(stage_name, ctl, result, notes, {"env": env, "command": command})

        stopped: str | None = None
        for attempt in range(2):
            try:
                with self._locked(command) as ctl:
                    return ctx.run_stage(stage_name, functools.partial(body, ctl, stopped))
            except LockRefused as exc:
                running = _running_deploy(exc.holder, env) if command == "abort" else None
                if running is None or attempt:
                    return _recorded(ctx, environment.refused(command), exc)
                stopped = stop_running_deploy(running, ctx.progress)
        raise AssertionError("unreachable")  # pragma: no cover

    def status(self) -> dict[str, Any]:
        ctx, env = self.ctx, self.environment.name
        notes: list[str] = []
        target = self.open_engine()
        try:
            ctl = controller(ctx, self.environment, target)
            holder = target.holder()
            ctl.state = target.load_state()
            if holder is None and (ctl.state.stable or ctl.state.rollout or ctl.state.unrecorded):
                try:
                    target.acquire(f"mlcd status {env}")
                except LockRefused as exc:  # a deploy started meanwhile
                    holder = exc.message
                else:
                    try:
                        ctl.load()
                        notes = ctl.reconcile()
                        try:
                            notes += record_pending(ctx, ctl)
                        except MlcdError as exc:
                            notes.append(f"could not record {ctl.state.unrecorded}: {exc.message}")
                    finally:
                        target.release()
            data = ctl.state.to_json()
            data["target_line"] = target.describe()
            data["url"] = target.url
        finally:
            target.close()
        data["notes"] = notes
        data["target"] = self.environment.kind
        data["port"] = self.environment.port
        data["busy"] = holder
        return data

    def down(self, record: Callable[[list[str]], StageOutcome]) -> StageResult:
        """Under the environment's lock (a running command: refused, naming it)."""
        ctx, environment = self.ctx, self.environment
        target = self.open_engine()
        try:
            try:
                target.acquire(f"mlcd down {environment.name}")
            except LockRefused as exc:
                return _recorded(ctx, environment.refused("down"), exc)
            try:
                ctx.progress(f"removing what {environment.name} runs: {target.describe()}")
                return ctx.run_stage(environment.stage("down"), lambda: record(target.down()))
            finally:
                target.release()
        finally:
            target.close()


class _Argo:
    """kubernetes: Argo Rollouts moves the traffic (`ArgoDeployer`); the stage adds the
    webhooks and the run folder."""

    def __init__(self, ctx: Context, environment: Environment, argo: ArgoDeployer) -> None:
        self.ctx = ctx
        self.environment = environment
        self.argo = argo

    def deploy(self, checked: _Checked, *, accept_plan: bool) -> StageResult:  # noqa: ARG002
        """The rollout's start and its outcome are told to the webhooks, as the other
        targets' are (the steps happen in the cluster); Argo has no plan to accept."""
        name = self.environment.stage("deploy")
        return self.ctx.run_stage(name, lambda: self._deploy(checked, name))

    def _deploy(self, checked: _Checked, name: str) -> StageOutcome:
        ctx, release, strategy = self.ctx, checked.release, checked.strategy
        notifier = notifier_for(ctx, self.environment, "deploy", self.argo.url)
        notifier("rollout started", release.version, {"strategy": strategy})
        try:
            outcome, paths = self.argo.deploy(
                release, strategy, folder=ctx.bundle.stage_dir(name), details=checked.details
            )
            outcome.artifacts = {p.name: ctx.bundle.relative(p) for p in paths}
            ended = str(outcome.details.get("outcome", ""))
            if ended in ("promoted", "rolled back", "paused"):
                notifier(
                    ended,
                    release.version,
                    {"detail": outcome.summary, "analysis": {"reasons": outcome.reasons[-4:]}},
                )
        finally:
            notifier.close()
        outcome.details["notifications"] = notifier.record()
        return outcome

    def decide(self, command: str) -> StageResult:
        return self.ctx.run_stage(
            self.environment.stage(command), lambda: self.argo.decide(command, self.ctx.bundle)
        )

    def status(self) -> dict[str, Any]:
        return self.argo.status()

    def down(self, record: Callable[[list[str]], StageOutcome]) -> StageResult:
        return self.ctx.run_stage(self.environment.stage("down"), lambda: record(self.argo.down()))


def _engines(ctx: Context, environment: Environment) -> Callable[[Callable[[], Target]], Deployer]:
    return lambda open_engine: _Engines(ctx, environment, open_engine)


def _argo(ctx: Context, environment: Environment) -> Callable[[ArgoDeployer], Deployer]:
    return lambda argo: _Argo(ctx, environment, argo)


def deployer(ctx: Context, environment: Environment) -> Deployer:
    """The environment's deployer, from the one target factory (`open_target`)."""
    return open_target(
        environment,
        loaded=ctx.loaded,
        progress=ctx.progress,
        engines=_engines(ctx, environment),
        argo=_argo(ctx, environment),
    )


# --------------------------------------------------------------------------------------
# down


def _who() -> str:
    user = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or str(os.getuid())
    return f"{user} on {socket.gethostname()} (pid {os.getpid()})"


def down(ctx: Context, env: str) -> StageResult:
    """Remove everything ENV runs on its target and record what, by whom and when in
    `down-<env>/` (a command holding the environment's lock: refused, `down-<env>-refused/`)."""
    environment = ctx.environment(env)
    who, when = _who(), utc_now()

    def record(removed: list[str]) -> StageOutcome:
        if removed:
            summary = f"removed what {env} ran: {len(removed)} thing(s)"
        else:
            summary = f"nothing to remove: {env} runs nothing on its target"
        details = {"env": env, "target": environment.kind, "removed": removed, "by": who,
                   "at": when}  # fmt: skip
        md = [f"### 🧹 down-{env}: {summary}", "", f"by {who} at {when}", ""]
        md += [f"- {line}" for line in removed]
        return StageOutcome(
            status="pass",
            summary=summary,
            reasons=[*removed, f"by {who} at {when}"],
            details=details,
            markdown="\n".join(md) + "\n",
        )

    try:
        for folder, what, hint in ctx.writable_for(environment.stage("down")):
            require_writable(folder, what, hint=hint)
        return deployer(ctx, environment).down(record)
    except LockRefused as exc:
        return _recorded(ctx, environment.refused("down"), exc)


def confirm_down(env: str, *, yes: bool, interactive: bool, answer: Callable[[str], str]) -> None:
    """`--yes`, or a `y` on a terminal; without a terminal and without --yes: exit 2."""
    if yes:
        return
    if not interactive:
        raise UserInputError(
            f"`mlcd down {env}` removes everything {env} runs (model containers, router, "
            "network, state and lock) and asks first; there is no terminal to ask on",
            hint=f"pass --yes to confirm: mlcd down {env} --yes",
        )
    reply = answer(
        f"Remove everything environment `{env}` runs (containers, router, network, state)? [y/N] "
    )
    if reply.strip().lower() not in ("y", "yes"):
        raise GateFailed(f"not confirmed: nothing of {env} was removed")


def _down_arguments(parser: argparse.ArgumentParser) -> None:
    _env_argument(parser)
    parser.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed without a TTY)"
    )


def _down_run(ctx: Context, args: argparse.Namespace) -> int:
    ctx.environment(args.env)  # an unknown environment: exit 2 before asking
    confirm_down(args.env, yes=args.yes, interactive=sys.stdin.isatty(), answer=input)
    _progress_printer(ctx)
    return ctx.conclude(down(ctx, args.env))


# --------------------------------------------------------------------------------------
# commands

_ENV_HELP = "ENV is an environment of mlcd.yaml (environments:)."

DEPLOY = Command(
    name="deploy",
    help="roll a release out to ENV (canary, blue-green or shadow) with analysis and rollback",
    description="Check the gates (the release exists, its evaluation verdict and scan passed, "
    "it was live and healthy in every environment of `requires:`), take the environment's "
    "lock and roll the release out by its strategy. Every analysis interval the judge compares "
    "the candidate with the stable version on errors, latency and predictions; a failed "
    "analysis rolls back by itself (exit 1); a step passes only when the judge shows the "
    "candidate within its tolerances, else it is extended up to analysis.max-intervals and "
    "then pauses for `mlcd promote` / `mlcd abort` (exit 1, 'paused'). " + _ENV_HELP,
    example="mlcd deploy staging\nmlcd deploy production --strategy blue-green --release 0.1.3",
    add_arguments=_deploy_arguments,
    run=_deploy_run,
)
STATUS = Command(
    name="status",
    help="what is live in ENV, what is rolling out, the last analysis and the history",
    description="Show the environment's state. A rollout left half-done by a killed process is "
    "found and undone first (stable serving all traffic). " + _ENV_HELP,
    example="mlcd status staging\nmlcd status production --format json",
    add_arguments=_env_argument,
    run=_status_run,
)
ROLLBACK = Command(
    name="rollback",
    help="return ENV to the release that was live before",
    description="Switch ENV back to its previous release (at once when the old version is "
    "still up, else after starting it), or undo a rollout in progress. " + _ENV_HELP,
    example="mlcd rollback production",
    add_arguments=_env_argument,
    run=_rollback_run,
)
PROMOTE = Command(
    name="promote",
    help="complete a rollout of ENV that is paused for a decision",
    description="Send all traffic to the candidate of a paused rollout and retire the old "
    "version. " + _ENV_HELP,
    example="mlcd promote staging",
    add_arguments=_env_argument,
    run=_promote_run,
)
ABORT = Command(
    name="abort",
    help="roll back a rollout of ENV that is paused or in progress",
    description="Send all traffic back to the stable version and remove the candidate. A "
    "rollout that is paused, or left in progress by a command that is gone, is rolled back "
    "here; a deploy still running on this machine is stopped with SIGTERM first (it rolls "
    "its candidate back itself and records `interrupted`), then abort reports what is live. "
    "A deploy running on another machine is refused with its holder named. " + _ENV_HELP,
    example="mlcd abort staging",
    add_arguments=_env_argument,
    run=_abort_run,
)
DOWN = Command(
    name="down",
    help="remove everything ENV runs on its target (asks first; --yes without a terminal)",
    description="Remove what the environment runs on its target: on local and docker-host the "
    "model containers, the router, the network and the state and lock kept there; on swarm "
    "the release and router services, the state's Swarm configs and the overlay network; on "
    "kubernetes the Rollout, its Services and AnalysisTemplates. The environment's lock is "
    "taken first: a command that holds it (a running deploy) makes down refuse, naming it "
    "(exit 1). Asks for confirmation on a terminal; without one, --yes is required (else "
    "exit 2). What was removed, by whom and when is recorded in <out>/down-ENV/; nothing "
    "to remove is not an error (exit 0, saying so). The model registry is left alone. " + _ENV_HELP,
    example="mlcd down staging\nmlcd down review-42 --yes",
    add_arguments=_down_arguments,
    run=_down_run,
)
COMMANDS = [DEPLOY, STATUS, ROLLBACK, PROMOTE, ABORT, DOWN]

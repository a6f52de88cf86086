"""The kubernetes target: the rollout handed to Argo Rollouts, and its real outcome awaited.

`mlcd deploy` renders and validates the objects (`mlcd.rollout.kubernetes`), applies them,
then watches the Rollout until the controller has finished with this revision:
- `Healthy` with the new revision stable → **promoted** (recorded in the model registry,
  like the other targets);
- `Degraded`, or aborted (a failed AnalysisRun makes Argo abort and send the traffic back to
  stable) → **rolled back**, with the AnalysisRun's failing metrics as the reasons;
- `Paused` for a decision (an inconclusive AnalysisRun, or a pause without a duration) →
  **paused**, waiting for `mlcd promote` / `mlcd abort`.
Timed canary pauses (`CanaryPauseStep`) are part of the rollout and are waited through.
`mlcd status` reads the Rollout; `promote`, `abort` and `rollback` call the Argo Rollouts
kubectl plugin and wait again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlcd.config import EnvironmentSection
from mlcd.context import Context
from mlcd.contracts import DeployDetails
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.evidence import StageOutcome
from mlcd.registry import open_registry
from mlcd.rollout import gates
from mlcd.rollout.gates import Release
from mlcd.rollout.kubernetes import object_name, render, validate_custom, write
from mlcd.signing.admission import policy as signed_policy
from mlcd.tools.kubectl import Cluster

POLL = 2.0
_PASSING = ("promoted",)


def _poll_interval() -> float:
    import os

    raw = os.environ.get("MLCD_KUBERNETES_POLL", "")
    try:
        return max(0.05, float(raw)) if raw else POLL
    except ValueError:
        return POLL


def _analysis(status: dict[str, Any]) -> dict[str, Any]:
    """The AnalysisRun reference of the current step or the pre-promotion analysis."""
    for key, sub in (
        ("canary", "currentStepAnalysisRunStatus"),
        ("canary", "currentBackgroundAnalysisRunStatus"),
        ("blueGreen", "prePromotionAnalysisRunStatus"),
    ):
        found = (status.get(key) or {}).get(sub)
        if isinstance(found, dict) and found.get("name"):
            return found
    return {}


def _analysis_reasons(cluster: Cluster, ref: dict[str, Any]) -> list[str]:
    if not ref:
        return []
    run = cluster.get("analysisrun", str(ref["name"])) or {}
    status = run.get("status") or {}
    reasons = [
        f"AnalysisRun {ref['name']}: {status.get('phase', ref.get('status', '?'))}"
        + (
            f" ({status.get('message') or ref.get('message')})"
            if status.get("message") or ref.get("message")
            else ""
        )
    ]
    reasons.extend(
        f"metric {metric.get('name')}: {metric.get('phase')}"
        + (f" — {metric['message']}" if metric.get("message") else "")
        + f" (failed {metric.get('failed', 0)}, inconclusive "
        f"{metric.get('inconclusive', 0)}, errors {metric.get('error', 0)})"
        for metric in status.get("metricResults") or []
        if metric.get("phase") not in (None, "Successful")
    )
    return reasons


def classify(rollout: dict[str, Any]) -> str | None:
    """`promoted`, `rolled back`, `paused`, or None while Argo Rollouts is still at work."""
    meta = rollout.get("metadata") or {}
    status = rollout.get("status") or {}
    if str(status.get("observedGeneration", "")) != str(meta.get("generation", "")):
        return None  # the controller has not seen this revision yet
    phase = status.get("phase")
    if status.get("abort") or phase == "Degraded":
        return "rolled back"
    if phase == "Paused":
        reasons = {str(c.get("reason")) for c in status.get("pauseConditions") or []}
        return None if reasons <= {"CanaryPauseStep"} and reasons else "paused"
    if phase == "Healthy":
        current = status.get("currentPodHash")
        stable = status.get("stableRS") or (status.get("blueGreen") or {}).get("activeSelector")
        return "promoted" if current and current == stable else None
    return None


def wait(
    ctx: Context, cluster: Cluster, name: str, timeout: float
) -> tuple[str, dict[str, Any], list[str]]:
    """Watch the Rollout until Argo Rollouts has finished with it."""
    deadline = time.monotonic() + timeout
    last_line = ""
    while True:
        rollout = cluster.get("rollout", name)
        if rollout is None:
            raise EnvironmentMissing(f"Rollout {name} is not in {cluster.where}")
        status = rollout.get("status") or {}
        line = f"Rollout {name}: {status.get('phase', 'Progressing')}" + (
            f" — {status['message']}" if status.get("message") else ""
        )
        if line != last_line:
            ctx.progress(line)
            last_line = line
        outcome = classify(rollout)
        if outcome is not None:
            return outcome, rollout, _analysis_reasons(cluster, _analysis(status))
        if time.monotonic() > deadline:
            raise EnvironmentMissing(
                f"Rollout {name} did not finish within {timeout:g} s ({line})",
                hint=f"kubectl argo rollouts get rollout {name} -n {cluster.namespace}; raise "
                "environments.<env>.kubernetes.timeout for long rollouts",
            )
        time.sleep(_poll_interval())


def _summary(outcome: str, name: str, version: str, rollout: dict[str, Any]) -> str:
    status = rollout.get("status") or {}
    message = f" ({status['message']})" if status.get("message") else ""
    if outcome == "promoted":
        return f"{version} is live: Rollout {name} is Healthy with the new revision stable"
    if outcome == "paused":
        return (
            f"paused: Rollout {name} waits for a decision{message}; `mlcd promote` or `mlcd abort`"
        )
    return f"rolled back {version}: Rollout {name} is {status.get('phase', 'Degraded')}{message}"


def _record(ctx: Context, env: str, release: Release, strategy: str) -> str:
    registry = open_registry(ctx.loaded)
    gates.record_deployment(registry, release, env, strategy=strategy, champion=env == "production")
    return f"recorded {release.version} live and healthy in {env} in the registry" + (
        f"; champion is now model {release.model_version}" if env == "production" else ""
    )


def deploy(
    ctx: Context,
    env: str,
    section: EnvironmentSection,
    release: Release,
    strategy: str,
    *,
    folder: Path,
    details: dict[str, Any],
) -> StageOutcome:
    objects = render(
        ctx.config.project,
        env,
        section,
        version=release.version,
        image=release.image,
        strategy=strategy,
    )
    admission = signed_policy(ctx.loaded, release.image.partition("@")[0])
    if admission is not None:
        objects.insert(0, admission)
    problems = [p for obj in objects for p in validate_custom(obj)]
    if problems:
        raise UserInputError("the rendered Argo Rollouts objects are invalid", problems=problems)
    manifests = folder / "manifests"
    paths = write(objects, manifests)
    k8s = section.kubernetes
    name = object_name(ctx.config.project, env)
    with Cluster(context=k8s.context, namespace=k8s.namespace) as cluster:
        ctx.progress(f"kubectl apply -f {manifests}")
        applied = cluster.apply(manifests)
        outcome, rollout, analysis = wait(ctx, cluster, name, k8s.timeout)
        reasons = [*applied.splitlines(), *analysis]
        if outcome == "promoted":
            reasons.append(_record(ctx, env, release, strategy))
    status = rollout.get("status") or {}
    return StageOutcome(
        status="pass" if outcome in _PASSING else "fail",
        summary=_summary(outcome, name, release.version, rollout),
        reasons=reasons,
        artifacts={p.name: ctx.bundle.relative(p) for p in paths},
        details=DeployDetails.model_validate(
            {
                **details,
                "outcome": outcome,
                "rollout": name,
                "phase": status.get("phase"),
                "url": section.url or "",
                **(
                    {"waiting_for": f"mlcd promote {env} or mlcd abort {env}"}
                    if outcome == "paused"
                    else {}
                ),
            }
        ).dump(),
    )


def decide(ctx: Context, env: str, section: EnvironmentSection, command: str) -> StageOutcome:
    """promote / abort / rollback: the Argo Rollouts plugin, then the outcome awaited."""
    action = {"promote": "promote", "abort": "abort", "rollback": "undo"}[command]
    name = object_name(ctx.config.project, env)
    k8s = section.kubernetes
    with Cluster(context=k8s.context, namespace=k8s.namespace) as cluster:
        out = cluster.argo(action, name)
        outcome, rollout, analysis = wait(ctx, cluster, name, k8s.timeout)
        reasons = [*out.splitlines(), *analysis]
        image = _image(rollout)
        if outcome == "promoted" and command == "promote":
            registry = open_registry(ctx.loaded)
            version = (rollout.get("metadata") or {}).get("labels", {}).get("mlcd.dev/version", "")
            release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, version or None)
            if release.image == image:
                reasons.append(_record(ctx, env, release, "promote"))
    wanted = {"promote": "promoted", "abort": "rolled back", "rollback": "promoted"}[command]
    return StageOutcome(
        status="pass" if outcome == wanted else "fail",
        summary=f"kubectl argo rollouts {action} {name}: Rollout is "
        f"{(rollout.get('status') or {}).get('phase')} ({outcome})",
        reasons=reasons,
        details={"env": env, "rollout": name, "outcome": outcome, "image": image},
    )


def _image(rollout: dict[str, Any]) -> str:
    containers = ((rollout.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or [{}]
    return str(containers[0].get("image", ""))


def status(ctx: Context, env: str, section: EnvironmentSection) -> dict[str, Any]:
    """The Rollout as Argo Rollouts reports it."""
    k8s = section.kubernetes
    name = object_name(ctx.config.project, env)
    with Cluster(context=k8s.context, namespace=k8s.namespace) as cluster:
        rollout = cluster.get("rollout", name)
        analysis = _analysis_reasons(cluster, _analysis((rollout or {}).get("status") or {}))
    st = (rollout or {}).get("status") or {}
    labels = ((rollout or {}).get("metadata") or {}).get("labels") or {}
    return {
        "env": env,
        "target": "kubernetes",
        "target_line": f"kubernetes target, Rollout {name} in {cluster.where}",
        "url": section.url or "",
        "port": 0,
        "busy": None,
        "notes": [],
        "stable": {
            "version": labels.get("mlcd.dev/version", "?"),
            "container": name,
            "image": _image(rollout or {}),
        }
        if rollout
        else None,
        "rollout": None,
        "phase": st.get("phase"),
        "message": st.get("message", ""),
        "outcome": classify(rollout) if rollout else None,
        "last_analysis": {
            "time": "",
            "phase": st.get("phase", ""),
            "outcome": "",
            "reasons": analysis,
        }
        if analysis
        else {},
        "history": [],
    }

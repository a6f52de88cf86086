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
kubectl plugin and wait again; `mlcd down` deletes the environment's objects.

`ArgoDeployer` is Argo Rollouts' reconciler behind the same four verbs as the container
engines' shared controller (`deploy`, `decide`, `status`, `down`; `mlcd.rollout.targets`
opens either from the resolved `Environment`). It takes no `Context`: what it needs (the
environment, the loaded config, a progress callback) is passed in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcd.config import LoadedConfig
from mlcd.contracts import DeployDetails
from mlcd.environment import Environment
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.evidence import Bundle, StageOutcome
from mlcd.registry import open_registry
from mlcd.rollout import gates
from mlcd.rollout.gates import Release
from mlcd.rollout.kubernetes import labels_of, object_name, render, validate_custom, write
from mlcd.signing.admission import policy as signed_policy
from mlcd.tools.kubectl import Cluster

POLL = 2.0
# what `mlcd down` deletes of what `render` applies: the Rollout and Services by the
# environment's labels, the AnalysisTemplates (labelled `analysis`) by their names
DOWN_KINDS = ("rollout", "service")
TEMPLATE_SUFFIXES = ("analysis", "judge")


def _poll_interval() -> float:
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
    progress: Callable[[str], None], cluster: Cluster, name: str, timeout: float
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
            progress(line)
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


def _image(rollout: dict[str, Any]) -> str:
    containers = ((rollout.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or [{}]
    return str(containers[0].get("image", ""))


class ArgoDeployer:
    """One environment on Kubernetes: Argo Rollouts does the traffic work; this applies,
    waits, decides and reads."""

    kind = "kubernetes"

    def __init__(
        self,
        environment: Environment,
        loaded: LoadedConfig,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.environment = environment
        self.loaded = loaded
        self.progress = progress
        self.name = object_name(environment.project, environment.name)

    @property
    def url(self) -> str:
        return self.environment.section.url or ""

    def _cluster(self) -> Cluster:
        k8s = self.environment.section.kubernetes
        return Cluster(context=k8s.context, namespace=k8s.namespace)

    def deploy(
        self, release: Release, strategy: str, *, folder: Path, details: dict[str, Any]
    ) -> tuple[StageOutcome, list[Path]]:
        """Render, validate, apply, and wait for Argo's outcome; a promoted release is
        recorded in the model registry. The outcome and the manifests written."""
        env = self.environment
        objects = render(
            env.project,
            env.name,
            env.section,
            version=release.version,
            image=release.image,
            strategy=strategy,
        )
        admission = signed_policy(self.loaded, release.image.partition("@")[0])
        if admission is not None:
            objects.insert(0, admission)
        problems = [p for obj in objects for p in validate_custom(obj)]
        if problems:
            raise UserInputError(
                "the rendered Argo Rollouts objects are invalid", problems=problems
            )
        manifests = folder / "manifests"
        paths = write(objects, manifests)
        with self._cluster() as cluster:
            self.progress(f"kubectl apply -f {manifests}")
            applied = cluster.apply(manifests)
            outcome, rollout, analysis = wait(
                self.progress, cluster, self.name, env.section.kubernetes.timeout
            )
            reasons = [*applied.splitlines(), *analysis]
            if outcome == "promoted":
                reasons.append(gates.record_live(self.loaded, env, release, strategy))
        status = rollout.get("status") or {}
        return (
            StageOutcome(
                status="pass" if outcome == "promoted" else "fail",
                summary=_summary(outcome, self.name, release.version, rollout),
                reasons=reasons,
                details=DeployDetails.model_validate(
                    {
                        **details,
                        "outcome": outcome,
                        "rollout": self.name,
                        "phase": status.get("phase"),
                        "url": self.url,
                        **(
                            {"waiting_for": f"mlcd promote {env.name} or mlcd abort {env.name}"}
                            if outcome == "paused"
                            else {}
                        ),
                    }
                ).dump(),
            ),
            paths,
        )

    def decide(self, command: str, bundle: Bundle) -> StageOutcome:
        """promote / abort / rollback: the Argo Rollouts plugin, then the outcome awaited."""
        env = self.environment
        action = {"promote": "promote", "abort": "abort", "rollback": "undo"}[command]
        with self._cluster() as cluster:
            out = cluster.argo(action, self.name)
            outcome, rollout, analysis = wait(
                self.progress, cluster, self.name, env.section.kubernetes.timeout
            )
            reasons = [*out.splitlines(), *analysis]
            image = _image(rollout)
            if outcome == "promoted" and command == "promote":
                registry = open_registry(self.loaded)
                labels = (rollout.get("metadata") or {}).get("labels", {})
                version = labels.get("mlcd.dev/version", "")
                release = gates.resolve_release(self.loaded, bundle, registry, version or None)
                if release.image == image:
                    reasons.append(
                        gates.record_live(self.loaded, env, release, "promote", registry)
                    )
        wanted = {"promote": "promoted", "abort": "rolled back", "rollback": "promoted"}[command]
        return StageOutcome(
            status="pass" if outcome == wanted else "fail",
            summary=f"kubectl argo rollouts {action} {self.name}: Rollout is "
            f"{(rollout.get('status') or {}).get('phase')} ({outcome})",
            reasons=reasons,
            details={"env": env.name, "rollout": self.name, "outcome": outcome, "image": image},
        )

    def status(self) -> dict[str, Any]:
        """The Rollout as Argo Rollouts reports it."""
        env = self.environment
        with self._cluster() as cluster:
            rollout = cluster.get("rollout", self.name)
            analysis = _analysis_reasons(cluster, _analysis((rollout or {}).get("status") or {}))
        st = (rollout or {}).get("status") or {}
        labels = ((rollout or {}).get("metadata") or {}).get("labels") or {}
        return {
            "env": env.name,
            "target": self.kind,
            "target_line": f"kubernetes target, Rollout {self.name} in {cluster.where}",
            "url": self.url,
            "port": 0,
            "busy": None,
            "notes": [],
            "stable": {
                "version": labels.get("mlcd.dev/version", "?"),
                "container": self.name,
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

    def holder(self) -> str | None:
        """Argo Rollouts serialises the changes itself: mlcd holds no lock of its own."""
        return None

    def down(self) -> list[str]:
        """Delete the environment's Rollout and Services (by its labels) and its
        AnalysisTemplates (by their names); [] when there were none."""
        env = self.environment
        selector = ",".join(f"{k}={v}" for k, v in labels_of(env.project, env.name).items())
        templates = [f"{self.name}-{suffix}" for suffix in TEMPLATE_SUFFIXES]
        with self._cluster() as cluster:
            deleted = cluster.delete(DOWN_KINDS, selector)
            deleted += cluster.delete_named("analysistemplate", templates)
        return [f"deleted {name} in {cluster.where}" for name in deleted]

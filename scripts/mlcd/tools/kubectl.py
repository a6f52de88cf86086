"""The kubectl adapter: apply rendered manifests to the configured context."""

from __future__ import annotations

from pathlib import Path

from mlcd.errors import EnvironmentMissing
from mlcd.tools.base import find_program, run

INSTALL_HINT = (
    "install kubectl (https://kubernetes.io/docs/tasks/tools/) and configure a context that "
    "reaches a cluster with Argo Rollouts installed"
)


def _argv(context: str | None, namespace: str) -> list[str]:
    argv = [find_program("kubectl", hint=INSTALL_HINT)]
    if context:
        argv += ["--context", context]
    return [*argv, "--namespace", namespace]


def apply(folder: Path, *, context: str | None, namespace: str) -> str:
    """`kubectl apply -f FOLDER`; the cluster's answer, or exit 3 when it cannot be reached."""
    result = run([*_argv(context, namespace), "apply", "-f", str(folder)], timeout=300)
    if result.returncode != 0:
        raise EnvironmentMissing(
            f"kubectl apply to context {context or '(current)'} failed: "
            f"{(result.stderr or result.stdout).strip()[-500:]}",
            hint="check `kubectl config get-contexts`, that the cluster answers, and that the "
            "Argo Rollouts CRDs are installed (kubectl get crd rollouts.argoproj.io)",
        )
    return result.stdout.strip()


def argo(action: str, name: str, *, context: str | None, namespace: str) -> str:
    """`kubectl argo rollouts promote|abort|undo NAME` (the Argo Rollouts kubectl plugin)."""
    result = run([*_argv(context, namespace), "argo", "rollouts", action, name], timeout=120)
    if result.returncode != 0:
        raise EnvironmentMissing(
            f"kubectl argo rollouts {action} {name} failed: "
            f"{(result.stderr or result.stdout).strip()[-500:]}",
            hint="install the Argo Rollouts kubectl plugin (kubectl-argo-rollouts) and check "
            "the context",
        )
    return result.stdout.strip()

"""The kubectl adapter: apply manifests, read objects, and the Argo Rollouts plugin.

The kubeconfig is the configured context's, or the content of `MLCD_KUBECONFIG` (the
workflow's `kubeconfig` secret), which is written to a private temporary file (0600) for
the duration of the command and never into the run folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlcd.errors import EnvironmentMissing
from mlcd.tools.base import ToolResult, find_program, run

INSTALL_HINT = (
    "install kubectl (https://kubernetes.io/docs/tasks/tools/) and configure a context that "
    "reaches a cluster with Argo Rollouts installed"
)
KUBECONFIG_ENV = "MLCD_KUBECONFIG"


class Cluster:
    """kubectl against one context and namespace."""

    def __init__(self, *, context: str | None, namespace: str) -> None:
        self.context = context
        self.namespace = namespace
        self._folder: Path | None = None
        self.env: dict[str, str] = {}
        content = os.environ.get(KUBECONFIG_ENV)
        if content:
            self._folder = Path(tempfile.mkdtemp(prefix="mlcd-kube-"))
            self._folder.chmod(0o700)
            path = self._folder / "config"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            self.env["KUBECONFIG"] = str(path)

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"context {self.context or '(current)'}, namespace {self.namespace}"

    def _run(self, *args: str, timeout: float = 120) -> ToolResult:
        argv = [find_program("kubectl", hint=INSTALL_HINT)]
        if self.context:
            argv += ["--context", self.context]
        return run([*argv, "--namespace", self.namespace, *args], timeout=timeout, env=self.env)

    def apply(self, folder: Path) -> str:
        """`kubectl apply -f FOLDER`; the cluster's answer, or exit 3 when it cannot."""
        result = self._run("apply", "-f", str(folder), timeout=300)
        if result.returncode != 0:
            raise EnvironmentMissing(
                f"kubectl apply to {self.where} failed: "
                f"{(result.stderr or result.stdout).strip()[-500:]}",
                hint="check `kubectl config get-contexts` (or the kubeconfig secret), that the "
                "cluster answers, and that the Argo Rollouts CRDs are installed "
                "(kubectl get crd rollouts.argoproj.io)",
            )
        return result.stdout.strip()

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """`kubectl get KIND NAME -o json`; None when it does not exist."""
        result = self._run("get", kind, name, "-o", "json")
        if result.returncode != 0:
            if "notfound" in result.stderr.lower().replace(" ", ""):
                return None
            raise EnvironmentMissing(
                f"kubectl get {kind} {name} in {self.where} failed: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        with contextlib.suppress(ValueError):
            data = json.loads(result.stdout)
            if isinstance(data, dict):
                return data
        raise EnvironmentMissing(f"kubectl get {kind} {name} printed no JSON object")

    def argo(self, action: str, name: str) -> str:
        """`kubectl argo rollouts promote|abort|undo NAME` (the Argo Rollouts plugin)."""
        result = self._run("argo", "rollouts", action, name)
        if result.returncode != 0:
            raise EnvironmentMissing(
                f"kubectl argo rollouts {action} {name} failed: "
                f"{(result.stderr or result.stdout).strip()[-500:]}",
                hint="install the Argo Rollouts kubectl plugin (kubectl-argo-rollouts) and "
                "check the context",
            )
        return result.stdout.strip()

    def delete(self, kinds: tuple[str, ...], selector: str) -> list[str]:
        """`kubectl delete KINDS -l SELECTOR --ignore-not-found -o name`: the objects deleted
        ([] when there were none), or exit 3 when the cluster refuses."""
        return self._delete(",".join(kinds), "-l", selector)

    def delete_named(self, kind: str, names: list[str]) -> list[str]:
        """`kubectl delete KIND NAME… --ignore-not-found -o name`."""
        return self._delete(kind, *names)

    def _delete(self, *what: str) -> list[str]:
        result = self._run("delete", *what, "--ignore-not-found", "-o", "name")
        if result.returncode != 0:
            raise EnvironmentMissing(
                f"kubectl delete {' '.join(what)} in {self.where} failed: "
                f"{(result.stderr or result.stdout).strip()[-500:]}",
                hint="check `kubectl config get-contexts` (or the kubeconfig secret) and that "
                "the cluster answers",
            )
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

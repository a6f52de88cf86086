"""The kubernetes target against a fake `kubectl` that plays Argo Rollouts' state machine.

No cluster can run here; `fake_kubectl/kubectl` (first on PATH) answers `apply`, `get
rollout`, `get analysisrun`, `delete` and the Argo Rollouts plugin like the controller would:
healthy after a timed canary pause, degraded after a failed AnalysisRun, or paused after an
inconclusive one. `mlcd deploy` must wait for that outcome, report it, and record only the
promoted release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.deploy.conftest import HERE

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n# a secret of the workflow\n"


def _run(
    project: Any, tmp_path: Path, scenario: str, *args: str
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin" / "kubectl"
    if not fake.exists():
        fake.parent.mkdir()
        text = (HERE / "fake_kubectl" / "kubectl").read_text()
        fake.write_text(text.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
        fake.chmod(0o755)
        (tmp_path / "kube").mkdir()
    env = {
        **project.env(),
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBE_DIR": str(tmp_path / "kube"),
        "FAKE_KUBE_SCENARIO": scenario,
        "FAKE_KUBE_EXPECT_CONFIG": KUBECONFIG,
        "MLCD_KUBECONFIG": KUBECONFIG,
        "MLCD_KUBERNETES_POLL": "0.05",
    }
    return subprocess.run(
        project.argv(*args), capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "kube" / "calls").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_rollouts_report_argo_outcomes_and_record_only_the_promoted(
    make_project: Any, standin_images: dict[str, str], tmp_path: Path
) -> None:
    k8s = {"target": "kubernetes", "strategy": "canary",
           "kubernetes": {"namespace": "ml", "image-pull-secrets": ["regcred"]}}  # fmt: skip
    project = make_project({"staging": k8s, "production": {**k8s, "requires": ["staging"]}})
    good = project.release(standin_images["clean"])
    done = _run(project, tmp_path, "healthy", "deploy", "staging", "--release", good)
    assert done.returncode == 0, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "promoted"
    assert any("recorded" in r for r in result["reasons"])
    phases = [c["args"][-3:] for c in _calls(tmp_path) if "rollout" in c["args"]]
    assert len(phases) >= 3  # waited through Progressing and the timed pause
    manifest = next((project.out / "deploy-staging" / "manifests").glob("*-rollout-*.yaml"))
    assert "regcred" in manifest.read_text()
    # the kubeconfig came from MLCD_KUBECONFIG, in a private file that is gone afterwards
    used = {c["kubeconfig"] for c in _calls(tmp_path)}
    assert len(used) == 1
    assert not Path(used.pop()).exists()
    assert KUBECONFIG not in json.dumps(result)

    bad = project.release(standin_images["fail5"])
    done = _run(project, tmp_path, "degraded", "deploy", "staging", "--release", bad)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    assert any("AnalysisRun r-analysis-1: Failed" in r for r in result["reasons"])
    assert not any("recorded" in r for r in result["reasons"])
    # the start and the outcome are the rollout's events here (Argo Rollouts runs the steps)
    events = result["details"]["notifications"]["events"]
    assert [e["event"] for e in events] == ["started", "rolled back"]
    # not recorded: production refuses the rolled-back release and takes the promoted one
    refused = _run(project, tmp_path, "healthy", "deploy", "production", "--release", bad)
    assert refused.returncode == 1
    assert "never been live and healthy in staging" in refused.stdout
    taken = _run(project, tmp_path, "healthy", "deploy", "production", "--release", good)
    assert taken.returncode == 0, taken.stdout + taken.stderr

    slow = project.release(standin_images["clean"])
    done = _run(project, tmp_path, "inconclusive", "deploy", "staging", "--release", slow)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "paused"
    assert "mlcd promote" in result["summary"]
    status = _run(project, tmp_path, "inconclusive", "status", "staging", "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["phase"] == "Paused"
    promoted = _run(project, tmp_path, "inconclusive", "promote", "staging")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert any("recorded" in r for r in project.result("promote-staging")["reasons"])
    assert any(c["args"][2:5] == ["argo", "rollouts", "promote"] for c in _calls(tmp_path))

    # mlcd down: the environment's objects go (by its labels), production's stay
    asked = _run(project, tmp_path, "healthy", "down", "staging")
    assert asked.returncode == 2, asked.stdout + asked.stderr
    down = _run(project, tmp_path, "healthy", "down", "staging", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    removed = project.result("down-staging")["details"]["removed"]
    assert any(line.startswith("deleted rollout/") for line in removed), removed
    assert any(line.startswith("deleted service/") for line in removed), removed
    assert any(line.startswith("deleted analysistemplate/") for line in removed), removed
    assert all("production" not in line for line in removed), removed
    state = json.loads((tmp_path / "kube" / "state.json").read_text())
    assert state["objects"]
    assert all("-production" in o["name"] for o in state["objects"]), state["objects"]
    again = _run(project, tmp_path, "healthy", "down", "staging", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to remove" in again.stdout

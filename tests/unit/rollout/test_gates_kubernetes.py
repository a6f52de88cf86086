"""Release resolution and gates, the Kubernetes rendering and its validation, and wiring."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlcd.config import EnvironmentSection
from mlcd.context import Context
from mlcd.errors import UserInputError
from mlcd.evidence import Bundle
from mlcd.registry import CHAMPION, IMAGE_DIGEST, LocalRegistry
from mlcd.rollout import gates, kubernetes, watch
from mlcd.stages import deploy

IMAGE = "127.0.0.1:5000/p@sha256:" + "a" * 64


def _project(tmp_path: Path, envs: dict[str, Any] | None = None) -> Context:
    config = {
        "version": 1,
        "project": "p",
        "model": {"task": "classification", "entrypoint": "t.py:f", "data": "d.csv", "target": "y"},
        "registry": {"path": "reg"},
        "environments": envs or {"staging": {}, "production": {"requires": ["staging"]}, "qa": {}},
    }
    (tmp_path / "mlcd.yaml").write_text(yaml.safe_dump(config))
    return Context(config_path=tmp_path / "mlcd.yaml", out=tmp_path / ".mlcd")


def _register(tmp_path: Path, *, passed: bool = True, scan: str | None = "pass") -> str:
    registry = LocalRegistry(tmp_path / "reg")
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    version = registry.register(
        model_file=model, metadata={}, metrics={}, verdict={"passed": passed}
    ).version
    registry.attach(version, IMAGE_DIGEST, IMAGE)
    if scan:
        registry.attach(version, "scan", {"status": scan})
    return version


def test_release_from_the_registry_and_gates(tmp_path: Path) -> None:
    ctx = _project(tmp_path)
    registry = LocalRegistry(tmp_path / "reg")
    version = _register(tmp_path)
    release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, None)
    assert (release.version, release.image) == (version, IMAGE)
    report = gates.check(release, "production", ["staging"])
    assert not report.passed
    assert "never been live and healthy in staging" in report.failures[0]
    gates.record_deployment(registry, release, "staging", strategy="canary", champion=False)
    release = gates.resolve_release(ctx.loaded, ctx.bundle, registry, version)
    assert gates.check(release, "production", ["staging"]).passed
    gates.record_deployment(registry, release, "production", strategy="blue-green", champion=True)
    assert registry.aliases()[CHAMPION] == version


def test_failed_verdict_and_missing_scan_are_refused(tmp_path: Path) -> None:
    ctx = _project(tmp_path)
    registry = LocalRegistry(tmp_path / "reg")
    version = _register(tmp_path, passed=False, scan=None)
    report = gates.check(
        gates.resolve_release(ctx.loaded, ctx.bundle, registry, version), "staging", []
    )
    assert not report.passed
    assert any("verdict" in f and "failed" in f for f in report.failures)
    assert any("no scan result" in f for f in report.failures)


def test_release_from_the_run_folder(tmp_path: Path) -> None:
    ctx = _project(tmp_path)
    version = _register(tmp_path, scan=None)
    bundle = Bundle(tmp_path / ".mlcd")
    for stage, status, details in (
        ("release", "pass", {"version": version, "image": IMAGE}),
        ("scan", "pass", {}),
        ("evaluate", "pass", {}),
    ):
        folder = bundle.stage_dir(stage)
        (folder / "result.json").write_text(
            json.dumps(
                {
                    "stage": stage,
                    "status": status,
                    "started": "t",
                    "duration_s": 1,
                    "summary": "s",
                    "details": details,
                }
            )
        )
    (bundle.root / "evaluate" / "verdict.json").write_text('{"passed": true, "checks": []}')
    release = gates.resolve_release(ctx.loaded, bundle, LocalRegistry(tmp_path / "reg"), None)
    assert release.version == version
    assert gates.check(release, "staging", []).passed


def test_nothing_released_is_an_input_error(tmp_path: Path) -> None:
    ctx = _project(tmp_path)
    with pytest.raises(UserInputError, match="no release to deploy"):
        gates.resolve_release(ctx.loaded, ctx.bundle, LocalRegistry(tmp_path / "reg"), None)


# ---------------------------------------------------------------------- kubernetes


def _render(section: EnvironmentSection, strategy: str) -> list[dict[str, Any]]:
    return kubernetes.render("p", "staging", section, version="v1", image=IMAGE, strategy=strategy)


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_rendered_objects_are_valid(strategy: str) -> None:
    section = EnvironmentSection.model_validate(
        {
            "canary": {"steps": [10, 50, 100], "interval": "30s", "min-requests": 200},
            "analysis": {"max-error-rate": 0.02, "max-p99-latency-ms": 80, "failure-limit": 1},
            "kubernetes": {"namespace": "models", "replicas": 3},
        }
    )
    objects = kubernetes.render(
        "breast-cancer", "production", section, version="v7", image=IMAGE, strategy=strategy
    )
    kinds = [o["kind"] for o in objects]
    assert kinds == ["Service", "Service", "AnalysisTemplate", "AnalysisTemplate", "Rollout"]
    for obj in objects:
        assert kubernetes.validate_custom(obj) == []
        if obj["kind"] in ("Service",):
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
    rollout = objects[-1]
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    template = json.dumps(objects[2])
    assert "result[0] <= 0.02" in template
    assert "result[0] <= 80" in template
    needed = 200 if strategy == "canary" else section.blue_green.min_requests
    assert f"result[0] >= {needed}" in template
    assert '"failureLimit": 1' in template
    if strategy == "canary":
        steps = rollout["spec"]["strategy"]["canary"]["steps"]
        judge_step = {
            "analysis": {
                "templates": [{"templateName": "breast-cancer-production-judge"}],
                "args": [
                    {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                    {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
                ],
            }
        }
        assert steps == [{"setWeight": 10}, judge_step, {"setWeight": 50}, judge_step]
    else:
        bg = rollout["spec"]["strategy"]["blueGreen"]
        assert bg["activeService"].endswith("-active")
        names = [t["templateName"] for t in bg["prePromotionAnalysis"]["templates"]]
        assert names == ["breast-cancer-production-analysis", "breast-cancer-production-judge"]


def test_the_pod_template_is_a_valid_pod_spec() -> None:
    section = EnvironmentSection()
    rollout = _render(section, "canary")[-1]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": rollout["spec"]["template"]["spec"],
    }
    kubernetes_validate.validate(pod, "1.30.0", strict=True)


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_the_judge_template_runs_mlcds_judge_in_a_valid_job(strategy: str) -> None:
    section = EnvironmentSection.model_validate(
        {
            "canary": {"interval": "20s", "min-requests": 300, "min-intervals": 3},
            "analysis": {"max-error-rate": 0.02, "quantiles": {"p50": None, "p95": 0.25}},
            "kubernetes": {"prometheus": "http://prom.monitoring:9090"},
        }
    )
    template = _render(section, strategy)[3]
    assert template["metadata"]["name"] == "p-staging-judge"
    assert kubernetes.validate_custom(template) == []
    [metric] = template["spec"]["metrics"]
    spec = metric["provider"]["job"]["spec"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec}
    kubernetes_validate.validate(job, "1.30.0", strict=True)
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == IMAGE  # the release's own image carries the judge
    command = container["command"]
    assert command[:3] == ["python", "-m", "mlcd.rollout.watch"]
    # the rendered command is one the judge accepts, and it carries the environment's limits
    args = argparse.ArgumentParser()
    watch.add_arguments(args)
    parsed = args.parse_args(command[3:])
    assert parsed.prometheus == "http://prom.monitoring:9090"
    assert parsed.canary.endswith('rollouts_pod_template_hash="{{args.canary-hash}}"')
    assert parsed.stable.endswith('rollouts_pod_template_hash="{{args.stable-hash}}"')
    limits, run = watch.limits_from(parsed.analysis, int(parsed.min_requests))
    assert limits.max_error_rate == 0.02
    assert limits.quantiles == ((0.5, None), (0.95, 0.25))
    assert run.inconclusive_limit is None
    if strategy == "canary":
        assert (parsed.interval, parsed.min_requests, parsed.min_intervals) == ("20s", 300, 3)


def test_schema_rejects_broken_rollouts() -> None:
    section = EnvironmentSection()
    rollout = _render(section, "canary")[-1]
    rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 150}]
    assert kubernetes.validate_custom(rollout)
    bg = _render(section, "blue-green")[-1]
    del bg["spec"]["strategy"]["blueGreen"]["activeService"]
    assert any("activeService" in p for p in kubernetes.validate_custom(bg))
    template = _render(section, "canary")[2]
    template["spec"]["metrics"][0]["provider"] = {}
    assert kubernetes.validate_custom(template)
    judged = _render(section, "canary")[3]
    del judged["spec"]["metrics"][0]["provider"]["job"]["spec"]
    assert kubernetes.validate_custom(judged)


def test_shadow_on_kubernetes_is_refused() -> None:
    with pytest.raises(UserInputError, match="shadow"):
        _render(EnvironmentSection(), "shadow")


# ---------------------------------------------------------------------- wiring


def test_ports_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcd.environment import ordered, resolve

    ctx = _project(tmp_path)
    assert ctx.environment("staging").port == 8081
    assert ctx.environment("production").port == 8082
    assert ctx.environment("qa").port == 8083
    assert resolve(ctx.loaded, "staging", {"MLCD_STAGING_PORT": "9999"}).port == 9999
    with pytest.raises(UserInputError):
        resolve(ctx.loaded, "staging", {"MLCD_STAGING_PORT": "http"})
    assert ordered(ctx.loaded) == ["staging", "production", "qa"]
    with pytest.raises(UserInputError, match="no environment `nope`"):
        ctx.environment("nope")
    state = resolve(ctx.loaded, "qa", {"MLCD_STATE_DIR": str(tmp_path / "st")}).state_dir
    assert state == (tmp_path / "st" / "qa").resolve()
    assert ctx.environment("production").holds_champion
    assert not ctx.environment("staging").holds_champion
    assert ctx.environment("qa") is ctx.environment("qa")  # resolved once per command


def test_requires_order_comes_first(tmp_path: Path) -> None:
    ctx = _project(tmp_path, {"production": {"requires": ["staging"]}, "staging": {}})
    from mlcd.environment import ordered

    assert ordered(ctx.loaded) == ["staging", "production"]
    from mlcd import pipeline

    names = [s.name for s in pipeline.steps(ctx)]
    assert names[-2:] == ["deploy-staging", "deploy-production"]


def test_cli_lists_the_commands() -> None:
    from mlcd import cli

    names = {c.name for c in cli.COMMANDS}
    assert {"deploy", "status", "rollback", "promote", "abort", "down"} <= names


def test_kubernetes_deploy_writes_valid_manifests_and_applies_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _project(
        tmp_path,
        {
            "staging": {
                "target": "kubernetes",
                "strategy": "canary",
                "kubernetes": {"context": "prod", "namespace": "ml"},
            }
        },
    )
    _register(tmp_path)
    monkeypatch.setenv("GITHUB_SHA", "0" * 40)  # no git subprocess in unit tests
    applied: list[tuple[Path, str | None, str]] = []
    from mlcd.tools.kubectl import Cluster

    def fake_apply(self: Cluster, folder: Path) -> str:
        applied.append((folder, self.context, self.namespace))
        return "rollout.argoproj.io/p-staging created"

    healthy = {
        "metadata": {"generation": 1, "labels": {}},
        "status": {
            "observedGeneration": "1",
            "phase": "Healthy",
            "currentPodHash": "abc",
            "stableRS": "abc",
        },
    }
    monkeypatch.setattr(Cluster, "apply", fake_apply)
    monkeypatch.setattr(Cluster, "get", lambda *_args: healthy)
    result = deploy.stage(ctx, "staging")
    assert result.status == "pass"
    assert result.details["outcome"] == "promoted"
    folder, context, namespace = applied[0]
    assert (context, namespace) == ("prod", "ml")
    files = sorted(folder.glob("*.yaml"))
    assert [f.name.split("-")[1] for f in files] == [
        "service",
        "service",
        "analysistemplate",
        "analysistemplate",
        "rollout",
    ]
    for path in files:
        obj = yaml.safe_load(path.read_text())
        assert kubernetes.validate_custom(obj) == []


def test_kubectl_failure_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcd.errors import EnvironmentMissing
    from mlcd.tools import kubectl
    from mlcd.tools.base import ToolResult

    monkeypatch.setattr(kubectl, "find_program", lambda *_a, **_k: "/usr/bin/kubectl")
    monkeypatch.setattr(
        kubectl,
        "run",
        lambda argv, **_k: ToolResult(tuple(argv), 1, "", "connection refused"),
    )
    with pytest.raises(EnvironmentMissing, match="connection refused") as info:
        kubectl.Cluster(context="x", namespace="n").apply(Path("m"))
    assert info.value.exit_code == 3
    assert info.value.hint
    assert "Argo Rollouts CRDs" in info.value.hint


def test_down_asks_first() -> None:
    from mlcd.errors import GateFailed

    asked: list[str] = []

    def answer(reply: str) -> Any:
        def ask(question: str) -> str:
            asked.append(question)
            return reply

        return ask

    with pytest.raises(UserInputError, match="no terminal") as info:
        deploy.confirm_down("staging", yes=False, interactive=False, answer=answer("y"))
    assert "--yes" in (info.value.hint or "")
    assert asked == []
    deploy.confirm_down("staging", yes=True, interactive=False, answer=answer("n"))
    assert asked == []
    deploy.confirm_down("staging", yes=False, interactive=True, answer=answer("y"))
    assert "staging" in asked[-1]
    with pytest.raises(GateFailed, match="nothing of staging was removed"):
        deploy.confirm_down("staging", yes=False, interactive=True, answer=answer(""))


def test_down_on_kubernetes_deletes_the_environments_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _project(tmp_path, {"staging": {"target": "kubernetes"}})
    monkeypatch.setenv("GITHUB_SHA", "0" * 40)  # no git subprocess in unit tests
    from mlcd.tools.kubectl import Cluster

    calls: list[tuple[str, ...]] = []

    def fake_delete(self: Cluster, *what: str) -> list[str]:
        calls.append(what)
        return [f"deleted-{len(calls)}"] if len(calls) <= 2 else []

    monkeypatch.setattr(Cluster, "_delete", fake_delete)
    result = deploy.down(ctx, "staging")
    assert result.status == "pass"
    assert result.details["removed"] == [
        "deleted deleted-1 in context (current), namespace default",
        "deleted deleted-2 in context (current), namespace default",
    ]
    selector = "app.kubernetes.io/name=p,app.kubernetes.io/managed-by=mlcd,mlcd.dev/env=staging"
    assert calls[0] == ("rollout,service", "-l", selector)
    assert calls[1] == ("analysistemplate", "p-staging-analysis", "p-staging-judge")
    again = deploy.down(ctx, "staging")
    assert again.details["removed"] == []
    assert "nothing to remove" in again.summary

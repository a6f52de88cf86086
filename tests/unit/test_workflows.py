"""The reusable workflows as GitHub reads them: what runs, with which permissions, named how.

- every job runs mlcd's actions from a checkout of the kit at `job.workflow_sha` (the called
  workflow's own commit), and no workflow or action names the kit by a moving ref;
- checks.yml's jobs are deliver.yml's checks, job for job;
- GitHub checks every job's `permissions:` against the caller's grant before the run (even
  jobs an `if:` skips), so the README's snippet and every example caller grant at least
  what each job of the workflow they call declares;
- release and deploy jobs are serialized per project (and environment) without cancelling a
  running one; artifact names and concurrency groups carry the project, and one project's
  download pattern never matches another's artifacts (`churn` vs `churn-v2`);
- the project's dependencies are installed before lint, test and train; the `image` output is
  only ever a pushed reference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github/workflows"
CALLED = {"checks.yml": WORKFLOWS / "checks.yml", "deliver.yml": WORKFLOWS / "deliver.yml"}
SHARED_JOBS = ("lint", "test", "train", "evaluate", "build")
LEVEL = {"none": 0, "read": 1, "write": 2}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _jobs(name: str) -> dict[str, dict[str, Any]]:
    jobs = _load(CALLED[name])["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def _callers() -> list[tuple[str, dict[str, Any]]]:
    """(where, caller job) for every job that calls checks.yml or deliver.yml: the example
    workflows, the test's caller, this repository's CI and the README's snippet."""
    found: list[tuple[str, dict[str, Any]]] = []
    files = [*ROOT.glob("examples/*.yml"), ROOT / "tests/workflows/ml.yml", WORKFLOWS / "ci.yml"]
    for path in files:
        data = _load(path)
        if "jobs" not in data:
            continue
        for job_id, job in data["jobs"].items():
            if re.search(r"(checks|deliver)\.yml", str(job.get("uses", ""))):
                found.append((f"{path.relative_to(ROOT)}:{job_id}", job))
    readme = (ROOT / "README.md").read_text()
    # every snippet of the README, the quick one at the top included: a user copies any of them
    for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL):
        data = yaml.safe_load(block)
        if not isinstance(data, dict):
            continue
        for job_id, job in (data.get("jobs") or {}).items():
            if re.search(r"(checks|deliver)\.yml", str(job.get("uses", ""))):
                found.append((f"README.md:{job_id}", job))
    return found


def _called(job: dict[str, Any]) -> str:
    match = re.search(r"(checks|deliver)\.yml", str(job["uses"]))
    assert match
    return match.group(0)


def test_there_are_callers_of_both_workflows() -> None:
    callers = _callers()
    assert {where.split(":")[0] for where, _ in callers} >= {
        "README.md",
        "examples/ml.yml",
        "examples/checks-only.yml",
        "examples/production.yml",
        "tests/workflows/ml.yml",
        ".github/workflows/ci.yml",
    }
    assert {_called(job) for _, job in callers} == {"checks.yml", "deliver.yml"}


@pytest.mark.parametrize("where_job", _callers(), ids=lambda item: item[0])
def test_each_caller_grants_what_every_job_declares(where_job: tuple[str, Any]) -> None:
    where, caller = where_job
    granted = caller.get("permissions") or {}
    assert isinstance(granted, dict), f"{where}: permissions must be a mapping"
    missing = []
    for job_id, job in _jobs(_called(caller)).items():
        for scope, level in (job.get("permissions") or {}).items():
            if LEVEL[str(granted.get(scope, "none"))] < LEVEL[str(level)]:
                missing.append(f"{job_id} needs {scope}: {level}")
    assert not missing, f"{where} grants too little: {missing}"


def test_checks_yml_needs_only_read_unless_comment_and_code_scanning_are_on() -> None:
    """Every job of checks.yml declares read access only; the two jobs that write (the PR
    comment, the SARIF upload) declare nothing and take the caller's grant, because GitHub
    refuses a run whose jobs declare more than the caller grants, skipped jobs included."""
    wanted: dict[str, str] = {}
    jobs = _jobs("checks.yml")
    for job in jobs.values():
        for scope, level in (job.get("permissions") or {}).items():
            if LEVEL[level] > LEVEL[wanted.get(scope, "none")]:
                wanted[scope] = level
    assert wanted == {"contents": "read", "deployments": "read"}
    assert "permissions" not in _load(CALLED["checks.yml"])  # so those two inherit the grant
    undeclared = {job_id for job_id, job in jobs.items() if "permissions" not in job}
    assert undeclared == {"report", "code-scanning"}
    assert "inputs.code-scanning != 'off'" in jobs["code-scanning"]["if"]
    assert jobs["code-scanning"]["steps"][2]["continue-on-error"] == (
        "${{ inputs.code-scanning != 'on' }}"
    )
    # deliver.yml's callers grant everything anyway: there, both jobs declare their scope
    deliver = _jobs("deliver.yml")
    assert deliver["report"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert deliver["code-scanning"]["permissions"] == {
        "contents": "read",
        "security-events": "write",
        "actions": "read",  # upload-sarif reads the run on private repositories
    }
    assert _load(CALLED["deliver.yml"])["permissions"] == {}


def test_the_checks_of_deliver_yml_are_the_jobs_of_checks_yml() -> None:
    checks, deliver = _jobs("checks.yml"), _jobs("deliver.yml")
    for job_id in (*SHARED_JOBS, "code-scanning", "report"):
        mine = {
            k: v for k, v in deliver[job_id].items() if job_id in SHARED_JOBS or k != "permissions"
        }
        assert checks[job_id] == mine, job_id
    assert set(deliver) == {*checks, "release", "deploy"}
    on = _load(CALLED["checks.yml"])[True]["workflow_call"]["inputs"]
    on_deliver = _load(CALLED["deliver.yml"])[True]["workflow_call"]["inputs"]
    assert {k: on_deliver[k] for k in on} == on


def _steps(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in _jobs(name).items() for step in job.get("steps", [])]


@pytest.mark.parametrize("name", sorted(CALLED))
def test_every_job_runs_the_kit_at_the_called_workflows_commit(name: str) -> None:
    for job_id, job in _jobs(name).items():
        steps = job.get("steps", [])
        uses = [str(step.get("uses", "")) for step in steps]
        kit_uses = [i for i, u in enumerate(uses) if u.startswith("./.mlcd-kit/")]
        if not kit_uses:
            continue
        kit = [
            step
            for step in steps
            if str(step.get("uses", "")).startswith("actions/checkout@")
            and (step.get("with") or {}).get("path") == ".mlcd-kit"
        ]
        assert len(kit) == 1, f"{name}:{job_id} checks the kit out {len(kit)} times"
        given = kit[0]["with"]
        # job.workflow_* names the reusable workflow's own repository and commit (the github
        # context is the caller's): docs/github.md
        assert given["repository"] == "${{ job.workflow_repository || vars.MLCD_KIT_REPOSITORY }}"
        assert given["ref"] == "${{ job.workflow_sha || vars.MLCD_KIT_SHA }}"
        assert given["persist-credentials"] is False
        # a private kit is read with the caller's kit-token; GITHUB_TOKEN reads only the caller
        assert given["token"] == "${{ secrets.kit-token || github.token }}"  # noqa: S105 - an expression
        assert steps.index(kit[0]) < kit_uses[0], f"{name}:{job_id}: kit used before checkout"
        setup = steps[kit_uses[0]]
        assert setup["uses"] == "./.mlcd-kit/actions/setup", f"{name}:{job_id}"
        assert setup["with"]["kit-sha"] == given["ref"]


def test_nothing_names_the_kit_by_a_moving_ref() -> None:
    files = [*WORKFLOWS.glob("*.yml"), *ROOT.glob("actions/*/action.yml")]
    for path in files:
        text = path.read_text()
        assert not re.search(r"(?m)^\s*-?\s*uses:\s*[\w.-]+/mlcd/", text), f"{path}: remote kit"
        assert "@main" not in text, path
    for name in CALLED:
        for job_id, step in _steps(name):
            ref = str(step.get("uses", ""))
            if not ref:
                continue
            assert ref.startswith(("./.mlcd-kit/actions/", "actions/", "github/")), (
                f"{name}:{job_id} uses {ref}"
            )


@pytest.mark.parametrize("name", sorted(CALLED))
def test_no_expression_inside_run(name: str) -> None:
    for job_id, step in _steps(name):
        assert "${{" not in str(step.get("run", "")), f"{name}:{job_id}: use env:"


def test_release_and_deploy_are_serialized_per_project_without_cancelling() -> None:
    jobs = _jobs("deliver.yml")
    release, deploy = jobs["release"], jobs["deploy"]
    assert release["concurrency"] == {
        "group": "mlcd-release-${{ github.repository }}-${{ needs.plan.outputs.project }}",
        "cancel-in-progress": False,
    }
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "${{ needs.plan.outputs.project }}" in deploy["concurrency"]["group"]
    assert "${{ inputs.environment }}" in deploy["concurrency"]["group"]
    assert deploy["environment"]["name"] == "${{ inputs.environment }}"
    assert deploy["environment"]["url"] == "${{ steps.deploy.outputs.url }}"
    # only a push to the default branch releases; a dispatch deploys an existing release
    plan = next(s for s in jobs["plan"]["steps"] if s.get("id") == "mode")
    mode = plan["env"]["MODE"]
    assert "github.event_name == 'workflow_dispatch' && 'deploy'" in mode
    assert "format('refs/heads/{0}', github.event.repository.default_branch)" in mode
    assert release["if"] == "needs.plan.outputs.mode == 'release'"
    for job_id in (*SHARED_JOBS[:2],):
        assert jobs[job_id]["if"] == "needs.plan.outputs.mode != 'deploy'"


MLFLOW_ENV = {
    f"MLFLOW_TRACKING_{part.upper()}": f"${{{{ secrets.mlflow-tracking-{part} }}}}"
    for part in ("username", "password", "token")
}


def test_the_mlflow_credentials_reach_every_stage_that_talks_to_the_tracking_server() -> None:
    for name, wanted in (("checks.yml", {"train", "evaluate"}), ("deliver.yml", None)):
        secrets = _load(CALLED[name])[True]["workflow_call"]["secrets"]
        assert {f"mlflow-tracking-{p}" for p in ("username", "password", "token")} <= set(secrets)
        for job_id, job in _jobs(name).items():
            for step in job.get("steps", []):
                uses = str(step.get("uses", ""))
                stage = uses.removeprefix("./.mlcd-kit/actions/")
                kit_stage = stage != uses and stage in ("train", "evaluate", "release", "deploy")
                if kit_stage and (wanted is None or stage in wanted):
                    env = step.get("env") or {}
                    assert {k: env.get(k) for k in MLFLOW_ENV} == MLFLOW_ENV, (name, job_id)


def test_deploy_passes_the_target_secrets_as_the_engines_env_vars() -> None:
    deploy = next(s for s in _jobs("deliver.yml")["deploy"]["steps"] if s.get("id") == "deploy")
    assert deploy["env"] == {
        "MLCD_DEPLOY_SSH_KEY": "${{ secrets.deploy-ssh-key }}",
        "MLCD_DEPLOY_KNOWN_HOSTS": "${{ secrets.deploy-known-hosts }}",
        "MLCD_KUBECONFIG": "${{ secrets.kubeconfig }}",
        "MLCD_NOTIFY_WEBHOOK": "${{ secrets.notify-webhook }}",
        **MLFLOW_ENV,
    }
    secrets = _load(CALLED["deliver.yml"])[True]["workflow_call"]["secrets"]
    assert {"deploy-ssh-key", "deploy-known-hosts", "kubeconfig", "notify-webhook"} <= set(secrets)


@pytest.mark.parametrize("name", sorted(CALLED))
def test_artifact_names_carry_the_project(name: str) -> None:
    count = 0
    for job_id, step in _steps(name):
        if str(step.get("uses", "")).startswith(("actions/upload-artifact@", "actions/download")):
            given = step.get("with") or {}
            label = str(given.get("name") or given.get("pattern"))
            assert "${{ needs.plan.outputs.project }}" in label, f"{name}:{job_id}: {label}"
            count += 1
    assert count >= 10


def test_the_github_template_config_uses_ghcr_and_the_slim_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlcd.config import load_config

    monkeypatch.delenv("MLCD_IMAGE", raising=False)
    config = load_config(ROOT / "examples/mlcd.yaml").config
    assert config.image_name == "ghcr.io/owner/repo"
    assert config.image.base == "python:3.11-slim"
    assert config.registry.backend == "auto"
    # the workflow's `image: ghcr.io/${{ github.repository }}` may carry capitals
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/Acme/Churn-Model")
    assert config.image_name == "ghcr.io/acme/churn-model"


def _artifact_names(name: str) -> tuple[set[str], set[str]]:
    """(uploaded names, download patterns) of a workflow, for one project's value."""
    uploads: set[str] = set()
    patterns: set[str] = set()
    for _job_id, step in _steps(name):
        given = step.get("with") or {}
        uses = str(step.get("uses", ""))
        if uses.startswith("actions/upload-artifact@"):
            uploads.add(str(given["name"]))
        elif uses.startswith("actions/download-artifact@") and given.get("pattern"):
            patterns.add(str(given["pattern"]))
    return uploads, patterns


@pytest.mark.parametrize("name", sorted(CALLED))
def test_one_projects_pattern_never_matches_anothers_artifacts(name: str) -> None:
    """Two projects of one repository, one named as a prefix of the other: each download
    pattern of one matches none of the other's uploads (the earlier `mlcd-<project>-*`
    matched `mlcd-churn-v2-lint` for `churn`, and merge-multiple overwrote files)."""
    from fnmatch import fnmatchcase

    uploads, patterns = _artifact_names(name)
    assert patterns, name
    project = "${{ needs.plan.outputs.project }}"
    environment = "${{ inputs.environment }}"
    pairs = [("churn", "churn-v2"), ("churn-v2", "churn"), ("a", "a.b"), ("a_b", "a")]
    for mine, theirs in pairs:
        their_names = {u.replace(project, theirs).replace(environment, "staging") for u in uploads}
        my_names = {u.replace(project, mine).replace(environment, "staging") for u in uploads}
        for pattern in patterns:
            mine_pattern = pattern.replace(project, mine)
            assert not [n for n in their_names if fnmatchcase(n, mine_pattern)], (
                name,
                mine_pattern,
            )
            # and it still finds this project's own evidence
            assert any(fnmatchcase(n, mine_pattern) for n in my_names), mine_pattern


@pytest.mark.parametrize("name", sorted(CALLED))
def test_dependencies_are_installed_before_lint_test_and_train(name: str) -> None:
    for job_id, what in (("lint", "model"), ("test", "all"), ("train", "model")):
        uses = [str(s.get("uses", "")) for s in _jobs(name)[job_id]["steps"]]
        deps = uses.index("./.mlcd-kit/actions/deps")
        assert (
            uses.index("./.mlcd-kit/actions/setup")
            < deps
            < uses.index(f"./.mlcd-kit/actions/{job_id}")
        ), f"{name}:{job_id}"
        step = _jobs(name)[job_id]["steps"][deps]
        assert step["with"]["for"] == what, f"{name}:{job_id}"


def test_the_image_output_is_only_ever_a_pushed_reference() -> None:
    """A pull request builds an image that stays on its runner: its id is an output named for
    what it is, never a `name@sha256:` reference that looks pullable."""
    outputs = _load(CALLED["deliver.yml"])[True]["workflow_call"]["outputs"]
    assert "jobs.build" not in outputs["image"]["value"], outputs["image"]
    assert outputs["built-image-id"]["value"] == "${{ jobs.build.outputs.image-id }}"
    checks = _load(CALLED["checks.yml"])[True]["workflow_call"]["outputs"]
    assert "image" not in checks
    assert checks["built-image-id"]["value"] == "${{ jobs.build.outputs.image-id }}"


def test_the_example_config_deploys_to_servers_not_the_runner() -> None:
    """A hosted runner refuses `target: local`: what a team copies deploys over SSH."""
    from mlcd.config import load_config

    config = load_config(ROOT / "examples/mlcd.yaml").config
    assert config.environments, "examples/mlcd.yaml has no environments"
    for name, environment in config.environments.items():
        assert environment.target == "docker-host", name
        assert str(environment.host).startswith("ssh://"), name
    for path in ROOT.glob("examples/*.yml"):
        text = path.read_text()
        if "deliver.yml" in text:
            assert "deploy-ssh-key: ${{ secrets.MLCD_DEPLOY_SSH_KEY }}" in text, path

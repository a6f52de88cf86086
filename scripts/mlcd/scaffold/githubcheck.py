"""`mlcd validate --github`: the caller workflow against the config, before a first push.

What GitHub would only say at run time, said here: the workflow that calls mlcd's reusable
workflow for this config exists, pins the kit by a tag or a full commit SHA, grants every
permission the called jobs ask for (a called workflow can only narrow its caller's token),
passes the deploy secrets the environments' targets need (a called workflow cannot read the
caller's environment secrets), and no environment it deploys is `local` (which `mlcd
deploy` refuses on a hosted runner).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcd.config import LoadedConfig
from mlcd.projectfiles import kit_root
from mlcd.scaffold.templates import CALLER_PERMISSIONS

REUSABLE = re.compile(r"/\.github/workflows/(deliver|checks)\.ya?ml@(?P<ref>\S+)$")
LOCAL_REUSABLE = re.compile(r"^\./\.github/workflows/(deliver|checks)\.ya?ml$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_TAG = re.compile(r"^v?\d+(\.\d+)*([.-][0-9A-Za-z.-]+)?$")
_BRANCHES = {"main", "master", "develop", "dev", "trunk", "head", "latest", "stable"}
_LEVEL = {"none": 0, "read": 1, "write": 2}
PLACEHOLDER_KIT = "org/mlcd"
PLACEHOLDER_HOSTS = ("example.com", "example.org", "example.net", ".invalid", ".example")

DOCS = {
    "permissions": "https://docs.github.com/en/actions/writing-workflows/workflow-syntax-for-github-actions#jobsjob_idpermissions",
    "reusable": "https://docs.github.com/en/actions/sharing-automations/reusing-workflows#passing-inputs-and-secrets-to-a-reusable-workflow",
    "pinning": "https://docs.github.com/en/actions/security-for-github-actions/security-guides/security-hardening-for-github-actions#using-third-party-actions",
}


@dataclass
class Report:
    workflow: Path | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def needed_permissions() -> dict[str, str]:
    """What deliver.yml's jobs ask for (read from the running kit's checkout when it has
    one), else what `mlcd init` grants."""
    kit = kit_root()
    deliver = kit / ".github" / "workflows" / "deliver.yml" if kit else None
    data = _load(deliver) if deliver is not None and deliver.is_file() else None
    if data is None:
        return {name: level for name, (level, _) in CALLER_PERMISSIONS.items()}
    needed: dict[str, str] = {}
    for job in (data.get("jobs") or {}).values():
        perms = job.get("permissions") if isinstance(job, dict) else None
        if not isinstance(perms, dict):
            continue
        for name, raw in perms.items():
            level = str(raw)
            if _LEVEL.get(level, 0) > _LEVEL.get(needed.get(str(name), "none"), 0):
                needed[str(name)] = level
    return needed


def _granted(workflow: dict[str, Any], job: dict[str, Any]) -> dict[str, str] | str:
    perms = job.get("permissions", workflow.get("permissions"))
    if perms is None:
        return "default"
    if isinstance(perms, str):
        return perms  # read-all | write-all
    return {str(k): str(v) for k, v in perms.items()} if isinstance(perms, dict) else {}


def _calls_config(job: dict[str, Any], loaded: LoadedConfig, repo: Path) -> bool:
    given = job.get("with") or {}
    folder = str(given.get("working-directory", "."))
    config = str(given.get("config", "mlcd.yaml"))
    if "${{" in folder or "${{" in config:
        return True  # an expression: cannot tell, count it
    return (repo / folder / config).resolve() == loaded.path.resolve()


def _callers(
    loaded: LoadedConfig, repo: Path
) -> list[tuple[Path, dict[str, Any], str, dict[str, Any]]]:
    found = []
    folder = repo / ".github" / "workflows"
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        data = _load(path)
        if data is None:
            continue
        for name, job in (data.get("jobs") or {}).items():
            if not isinstance(job, dict):
                continue
            uses = str(job.get("uses", ""))
            if (REUSABLE.search(uses) or LOCAL_REUSABLE.match(uses)) and _calls_config(
                job, loaded, repo
            ):
                found.append((path, data, str(name), job))
    return found


def check(loaded: LoadedConfig, repo: Path) -> Report:
    report = Report()
    callers = _callers(loaded, repo)
    if not callers:
        report.errors.append(
            f"no workflow in {repo / '.github' / 'workflows'} calls mlcd's deliver.yml (or "
            f"checks.yml) with this config ({loaded.path.name}); `mlcd init` writes one"
        )
        return report
    needed = needed_permissions()
    config = loaded.config
    for path, workflow, name, job in callers:
        where = f"{path.relative_to(repo)}: jobs.{name}"
        report.workflow = path
        uses = str(job["uses"])
        match = REUSABLE.search(uses)
        if uses.startswith(f"{PLACEHOLDER_KIT}/"):
            report.warnings.append(
                f"{where}: uses the placeholder repository {PLACEHOLDER_KIT}: name mlcd's "
                "repository (`mlcd init --force --kit OWNER/REPO@TAG`, or edit `uses:`)"
            )
        if match:
            ref = match.group("ref")
            if _SHA.match(ref):
                report.checked.append(f"{where}: mlcd pinned to commit {ref[:12]}")
            elif ref.lower() in _BRANCHES or not _TAG.match(ref):
                report.errors.append(
                    f"{where}: uses mlcd at `{ref}`, which is not a tag or a full commit SHA: "
                    f"every run could execute other code (pin it; {DOCS['pinning']})"
                )
            else:
                report.checked.append(f"{where}: mlcd pinned to tag {ref}")
        granted = _granted(workflow, job)
        missing = []
        for perm, level in sorted(needed.items()):
            if granted == "write-all":
                continue
            have = granted.get(perm, "none") if isinstance(granted, dict) else "none"
            if granted == "read-all":
                have = "read"
            if _LEVEL.get(have, 0) < _LEVEL.get(level, 0):
                missing.append(f"{perm}: {level}")
        if missing:
            report.errors.append(
                f"{where}: `permissions:` does not grant {', '.join(missing)}, which jobs of "
                f"deliver.yml ask for; the run would fail to start ({DOCS['permissions']})"
            )
        else:
            report.checked.append(f"{where}: permissions cover deliver.yml's jobs")
        secrets = job.get("secrets")
        passed = set(secrets) if isinstance(secrets, dict) else set()
        inherit = secrets == "inherit"
        deploys = (
            "checks.yml" not in uses and (job.get("with") or {}).get("deploy", True) is not False
        )
        targets = {env.target for env in config.environments.values()}
        wanted = []
        if "docker-host" in targets:
            wanted += ["deploy-ssh-key", "deploy-known-hosts"]
        if "kubernetes" in targets:
            wanted.append("kubeconfig")
        lacking = [s for s in wanted if s not in passed]
        if deploys and lacking and not inherit:
            report.errors.append(
                f"{where}: `secrets:` does not pass {', '.join(lacking)}, which the environments' "
                f"targets need (repository secrets: a called workflow cannot read the caller's "
                f"environment secrets; {DOCS['reusable']})"
            )
        elif deploys and wanted:
            report.checked.append(f"{where}: passes {', '.join(wanted)}")
        if deploys:
            for env_name, env in config.environments.items():
                if env.target == "local":
                    report.errors.append(
                        f"{loaded.path.name}: environments.{env_name} has target `local` (the "
                        f"default), which `mlcd deploy` refuses on a hosted runner; set "
                        f"`target: docker-host` with `host:` (or kubernetes), or call checks.yml"
                    )
                elif env.host and any(p in env.host for p in PLACEHOLDER_HOSTS):
                    report.warnings.append(
                        f"{loaded.path.name}: environments.{env_name}.host is still the "
                        f"placeholder {env.host}: fill in your server"
                    )
    return report

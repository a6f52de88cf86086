"""The files `mlcd init` writes: a commented `mlcd.yaml`, the caller workflow, and (when
the repository has no tests) one smoke test of the entrypoint."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlcd import __version__

# what the jobs of deliver.yml ask for; the caller must grant at least this (a called
# workflow's job can only narrow the caller's permissions)
CALLER_PERMISSIONS: dict[str, tuple[str, str]] = {
    "actions": ("read", "upload-sarif reads the run's metadata (private repositories)"),
    "attestations": ("write", "the release's signed build provenance"),
    "contents": ("write", "the version's tag and GitHub release; the model registry"),
    "deployments": ("write", "deployments on the Environments page (the deploy job)"),
    "id-token": ("write", "OIDC identity for keyless signing of the release"),
    "packages": ("write", "the image on ghcr.io (the release job)"),
    "pull-requests": ("write", "the one PR comment (the report job)"),
    "security-events": ("write", "lint and scan SARIF in code scanning"),
}


@dataclass(frozen=True)
class Plan:
    """Everything `mlcd init` decided, for the templates."""

    project: str
    task: str
    entrypoint: str
    entrypoint_found: str  # how it was found, for the comment
    data: str
    target: str
    target_why: str
    threshold_metric: str
    threshold_kind: str  # min | max
    threshold_value: float
    threshold_why: str
    requirements: str | None  # the requirements file written for the model, if any
    requirement_lines: tuple[str, ...]
    trusted_types: tuple[str, ...]  # classes of third-party packages skops must trust
    test_paths: tuple[str, ...]
    smoke_test: str | None  # the test file written, if any
    ruff_format: bool
    base_image: str
    kit: str  # OWNER/REPO
    kit_ref: str  # tag or full SHA
    config_path: str  # relative to the repository root
    working_directory: str
    branch: str


def _q(value: str) -> str:
    """A YAML scalar, quoted only when it needs to be (JSON strings are valid YAML)."""
    plain = value.replace("-", "").replace("_", "").replace(".", "").replace("/", "")
    if plain.isalnum() and not value[0].isdigit() and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


_YAML_WORDS = {"yes", "no", "true", "false", "null", "on", "off", "y", "n", "~"}


def config_text(plan: Plan) -> str:
    lines = [
        f"# mlcd.yaml written by `mlcd init` (mlcd {__version__}). Every key is documented in",
        "# docs/configuration.md; `mlcd validate` checks this file, `mlcd validate --github` the",
        "# caller workflow beside it. Paths are relative to this file.",
        "version: 1",
        f"project: {plan.project}",
        "model:",
        f"  task: {plan.task}",
        f"  # {plan.entrypoint_found}: it must return an UNFITTED estimator or pipeline",
        f"  entrypoint: {_q(plan.entrypoint)}",
        f"  data: {_q(plan.data)}",
        f"  # {plan.target_why}",
        f"  target: {_q(plan.target)}",
        "  params: {}  # keyword arguments passed to the entrypoint",
    ]
    if plan.requirements:
        lines += [
            "  # packages the model needs besides scikit-learn, NumPy and pandas (from the",
            "  # entrypoint's imports): installed by `mlcd deps` and baked into the image",
            f"  requirements: {_q(plan.requirements)}",
        ]
        if plan.trusted_types:
            lines += [
                "  # the classes a fitted model of these packages holds: loaded with skops, never",
                "  # unpickled; train names any other type the model needs",
                f"  trusted-types: [{', '.join(plan.trusted_types)}]",
            ]
    else:
        lines += [
            "  # packages the model needs besides scikit-learn, NumPy and pandas, if any:",
            "  # requirements: requirements-model.txt",
        ]
    ruff_format = "true" if plan.ruff_format else "false"
    lines += [
        "lint:",
        "  paths: [.]  # mlcd's own checkout, the run folder and virtualenvs are left out",
        f"  ruff-format: {ruff_format}"
        + ("" if plan.ruff_format else "  # true once the code is formatted with `ruff format`"),
        "test:",
        f"  paths: [{', '.join(_q(p) for p in plan.test_paths)}]",
        "  min-coverage: 0  # raise it to the coverage your tests reach (e.g. 80)",
        "evaluate:",
        "  thresholds:",
        f"    # {plan.threshold_why}",
        f"    {plan.threshold_metric}: {{{plan.threshold_kind}: {plan.threshold_value:g}}}",
        "  compare-to: champion  # the model live in production, once there is one",
        "image:",
        "  # the workflow names the image (ghcr.io/<owner>/<repo>/<project>); locally it is",
        f"  # 127.0.0.1:5000/{plan.project}",
        f"  base: {_q(plan.base_image)}",
        "scan: {severity: HIGH, ignore-unfixed: true}",
        "environments:",
        "  staging:",
        "    strategy: canary",
        "    canary: {steps: [10, 50, 100], interval: 30s, min-requests: 200}",
        "    load-test: {rps: 20}  # synthetic traffic from held-out rows while it is judged",
        "    # a server with Docker that you reach over SSH: fill in its address. The SSH key and",
        "    # known_hosts come from the workflow's deploy secrets (MLCD_DEPLOY_SSH_KEY,",
        "    # MLCD_DEPLOY_KNOWN_HOSTS). Locally: `mlcd run --target local` runs every",
        "    # environment on this machine's Docker engine instead.",
        "    target: docker-host",
        "    host: ssh://deploy@staging.example.com",
        "  production:",
        "    strategy: blue-green",
        "    requires: [staging]  # only releases that passed staging",
        "    target: docker-host",
        "    host: ssh://deploy@production.example.com",
    ]
    return "\n".join(lines) + "\n"


def workflow_text(plan: Plan) -> str:
    perms = [
        f"      {name}: {level} # {why}"
        for name, (level, why) in sorted(CALLER_PERMISSIONS.items())
    ]
    return "\n".join(
        [
            f"# Written by `mlcd init` (mlcd {__version__}): the caller of mlcd's reusable",
            "# workflow. A pull request runs the checks and keeps one PR comment; a push to",
            f"# {plan.branch} releases the image and rolls it out to staging; a manual run deploys",
            "# an existing release (default: the newest that passed the environment's requires:).",
            "# `mlcd validate --github` checks this file against mlcd.yaml.",
            f"name: ml {plan.project}",
            "",
            "on:",
            "  pull_request:",
            "  push:",
            f"    branches: [{plan.branch}]",
            "  workflow_dispatch:",
            "    inputs:",
            "      environment:",
            "        description: where to deploy",
            "        type: environment",
            "        default: production",
            "      release:",
            (
                '        description: "the release to deploy, e.g. 0.1.3 (empty: the newest '
                'that passed requires:)"'
            ),
            "        type: string",
            '        default: ""',
            "",
            "permissions: {}",
            "",
            "jobs:",
            "  deliver:",
            "    # pinned: every job runs mlcd's actions and engine from exactly this tag or SHA",
            f"    uses: {plan.kit}/.github/workflows/deliver.yml@{plan.kit_ref}",
            "    permissions:",
            *perms,
            "    with:",
            f"      config: {_q(_config_in_wd(plan))}",
            f"      working-directory: {_q(plan.working_directory)}",
            f"      image: ghcr.io/${{{{ github.repository }}}}/{plan.project}",
            "      environment: ${{ inputs.environment || 'staging' }}",
            "      release: ${{ inputs.release || '' }}",
            "    secrets:",
            "      registry-password: ${{ secrets.GITHUB_TOKEN }}",
            "      # repository secrets (a called workflow cannot read its caller's environment",
            "      # secrets): the docker-host targets' SSH key and known_hosts lines",
            "      deploy-ssh-key: ${{ secrets.MLCD_DEPLOY_SSH_KEY }}",
            "      deploy-known-hosts: ${{ secrets.MLCD_DEPLOY_KNOWN_HOSTS }}",
            "      # signed releases (`signing:` in mlcd.yaml, docs/signing.md): the private key",
            "      signing-key: ${{ secrets.MLCD_SIGNING_KEY }}",
            "",
        ]
    )


def _config_in_wd(plan: Plan) -> str:
    prefix = "" if plan.working_directory == "." else plan.working_directory.rstrip("/") + "/"
    return plan.config_path.removeprefix(prefix)


def smoke_test_text(plan: Plan) -> str:
    file, _, function = plan.entrypoint.rpartition(":")
    return f'''"""Written by `mlcd init`: the entrypoint builds an unfitted estimator. Add yours."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "{file}"


def test_the_entrypoint_builds_an_unfitted_estimator() -> None:
    sys.path.insert(0, str(ROOT))  # the project's own modules, as mlcd train imports them
    spec = importlib.util.spec_from_file_location("mlcd_entrypoint", ENTRYPOINT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.{function}()
    assert hasattr(model, "fit")
    assert hasattr(model, "get_params")
'''

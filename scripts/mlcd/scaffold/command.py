"""`mlcd init`: mlcd.yaml and the caller workflow for an existing repository."""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mlcd import __version__
from mlcd.context import Command, Context
from mlcd.errors import UserInputError
from mlcd.projectfiles import SKIPPED_NAMES, kit_root
from mlcd.scaffold import finders, templates
from mlcd.scaffold.githubcheck import PLACEHOLDER_KIT
from mlcd.tools import git

DEFAULT_KIT = PLACEHOLDER_KIT
DEFAULT_BASE = "python:3.11-slim"
SMOKE_TEST = "tests/test_mlcd_entrypoint.py"
MODEL_REQUIREMENTS = "requirements-model.txt"


@dataclass(frozen=True)
class Setting:
    """A repository setting or secret to create, the GitHub page it rests on, and how it
    is checked (if it can be from here)."""

    what: str
    url: str
    checked: str = ""


def settings(plan: templates.Plan) -> list[Setting]:
    envs = "https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-deployments/managing-environments-for-deployment"
    secrets = "https://docs.github.com/en/actions/security-for-github-actions/security-guides/using-secrets-in-github-actions#creating-secrets-for-a-repository"
    reusable = "https://docs.github.com/en/actions/sharing-automations/reusing-workflows#passing-inputs-and-secrets-to-a-reusable-workflow"
    permissions_docs = "https://docs.github.com/en/actions/security-for-github-actions/security-guides/automatic-token-authentication#permissions-for-the-github_token"
    access = "https://docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/enabling-features-for-your-repository/managing-github-actions-settings-for-a-repository#allowing-access-to-components-in-a-private-repository"
    sarif = "https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/uploading-a-sarif-file-to-github"
    return [
        Setting(
            "Settings → Environments: create `staging` and `production` (the deploy job runs "
            "in them; the dispatch input lists them)",
            envs,
        ),
        Setting(
            "Settings → Environments → production → Required reviewers, where a person must "
            "approve: public repositories on every plan; private and internal ones only on "
            "GitHub Enterprise plans, elsewhere production has no approval step",
            envs + "#required-reviewers",
        ),
        Setting(
            "Settings → Secrets and variables → Actions → Repository secrets: "
            "MLCD_DEPLOY_SSH_KEY (the private key that logs in to the servers) and "
            "MLCD_DEPLOY_KNOWN_HOSTS (`ssh-keyscan -H SERVER` output). Repository secrets, "
            "not environment secrets: a called workflow cannot receive its caller's "
            "environment secrets",
            f"{secrets} ; {reusable}",
            "mlcd validate --github: the workflow passes them",
        ),
        Setting(
            "GITHUB_TOKEN: no setting to change; the workflow's `permissions:` grants what "
            "the jobs need (contents, packages, deployments, pull-requests, security-events "
            "write; actions read; id-token and attestations write). Pull requests from forks "
            "and Dependabot get a read-only token: the report goes to the job summary, not a "
            "PR comment",
            permissions_docs,
            "mlcd validate --github: the permissions cover deliver.yml's jobs",
        ),
        Setting(
            f"The kit {plan.kit}: public, or (private) in the same organisation with "
            "Settings → Actions → General → Access allowing this repository; the jobs check "
            "it out with this repository's GITHUB_TOKEN",
            access,
        ),
        Setting(
            "Code scanning (lint and scan SARIF): public repositories, or GitHub Advanced "
            "Security on private ones; elsewhere the upload is skipped (code-scanning: auto)",
            sarif,
        ),
    ]


def _project_name(given: str | None, folder: Path) -> str:
    name = given or folder.name
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    if not slug or not re.match(r"^[a-z0-9][a-z0-9._-]*$", slug):
        raise UserInputError(
            f"cannot make a project name from `{name}`",
            hint="pass one: mlcd init --project my-model (lower-case letters, digits, . _ -)",
        )
    if given and slug != given:
        raise UserInputError(
            f"--project {given}: use lower-case letters, digits, `.`, `_` and `-` (e.g. {slug})"
        )
    return slug


def _kit(given: str | None) -> tuple[str, str]:
    if given:
        repo, sep, ref = given.partition("@")
        if not sep or repo.count("/") != 1 or not ref:
            raise UserInputError(f"--kit {given}: expected OWNER/REPO@TAG or OWNER/REPO@SHA")
        return repo, ref
    ref = f"v{__version__}"
    root = kit_root()
    url = git.origin_url(root) if root is not None else None
    match = re.search(r"github\.com[:/]([^/]+/[^/]+?)(\.git)?$", url or "")
    return (match.group(1) if match else DEFAULT_KIT), ref


# what makes a folder another project rather than a folder of this one's tests
_PROJECT_MARKERS = ("mlcd.yaml", "pyproject.toml", "setup.py", "setup.cfg")
_DATA_SUFFIXES = (".csv", ".parquet", ".pq")


def _another_project(folder: Path) -> bool:
    """A top-level folder with its own config, package metadata, requirements or data file is
    another project (`v2/` beside the root's model): its tests are not this project's."""
    if folder.name in ("tests", "test", "testing"):
        return False
    return any(
        entry.is_file()
        and (
            entry.name in _PROJECT_MARKERS
            or entry.suffix in _DATA_SUFFIXES
            or (entry.name.startswith("requirements") and entry.suffix == ".txt")
        )
        for entry in folder.iterdir()
    )


def _test_paths(root: Path) -> list[str]:
    found: list[str] = []
    for path in finders._files(root, (".py",)):  # the same walk as the finders
        name = path.name
        if not (name.startswith("test_") or name.endswith("_test.py")):
            continue
        parts = path.relative_to(root).parts
        top = parts[0] if len(parts) > 1 else "."
        if top in found or top in SKIPPED_NAMES:
            continue
        if top != "." and _another_project(root / top):
            continue
        found.append(top)
    return ["."] if "." in found else found


# the classes a fitted model of these packages holds besides scikit-learn's (what skops must
# be told to trust), by the task: measured with xgboost 3.2 (XGBClassifier, XGBRegressor)
_TRUSTED_BY_PACKAGE = {
    "xgboost": {
        "classification": ("xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"),
        "regression": ("xgboost.core.Booster", "xgboost.sklearn.XGBRegressor"),
    },
}


def _trusted_types(imports: list[str], task: str) -> tuple[str, ...]:
    found: list[str] = []
    for module in imports:
        for name in _TRUSTED_BY_PACKAGE.get(module.split(".")[0], {}).get(task, ()):
            if name not in found:
                found.append(name)
    return tuple(found)


def _uses_ruff(root: Path, repo: Path) -> bool:
    for folder in {root, repo}:
        if (folder / "ruff.toml").is_file() or (folder / ".ruff.toml").is_file():
            return True
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.ruff" in pyproject.read_text("utf-8", "replace"):
            return True
    return False


def _threshold(task: str, data: Path, target: str) -> tuple[str, str, float, str]:
    if task == "classification":
        share = finders.majority_share(data, target)
        value = math.floor(share * 100) / 100
        return (
            "accuracy",
            "min",
            value,
            (
                f"better than always answering the most common class ({share:.1%} of the "
                "rows); raise it to what the model must reach"
            ),
        )
    return (
        "r2",
        "min",
        0.0,
        "better than predicting the mean; raise it to what the model must reach",
    )


@dataclass
class Written:
    path: Path
    skipped: bool  # it existed and --force was not given


def _write(path: Path, text: str, *, force: bool, written: list[Written]) -> None:
    if path.exists() and not force:
        written.append(Written(path, skipped=True))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    written.append(Written(path, skipped=False))


def plan_for(root: Path, repo: Path, args: argparse.Namespace) -> templates.Plan:
    data = finders.find_data(root, args.data)
    data_rel = data.relative_to(root).as_posix()
    columns = finders.read_columns(data)
    target = finders.find_target(columns, args.target, data=data_rel)
    task = finders.infer_task(data, target.column)
    builder = finders.find_entrypoint(root, args.entrypoint)
    entry = builder.spec(root)
    found_how = (
        "given with --entrypoint"
        if args.entrypoint
        else f"found by mlcd init: `{builder.function}` returns a {builder.returns}"
    )
    imports = finders.third_party_imports(builder.file, root)
    lines = tuple(finders.requirement_line(m) for m in imports)
    metric, kind, value, why = _threshold(task, data, target.column)
    tests = _test_paths(root)
    kit, ref = _kit(args.kit)
    wd = root.relative_to(repo).as_posix() if root != repo else "."
    config_rel = (root / "mlcd.yaml").relative_to(repo).as_posix()
    return templates.Plan(
        project=_project_name(args.project, root),
        task=task,
        entrypoint=entry,
        entrypoint_found=found_how,
        data=data_rel,
        target=target.column,
        target_why=f"target: {target.why}",
        threshold_metric=metric,
        threshold_kind=kind,
        threshold_value=value,
        threshold_why=why,
        requirements=MODEL_REQUIREMENTS if lines else None,
        requirement_lines=lines,
        trusted_types=_trusted_types(list(imports), task),
        test_paths=tuple(tests) if tests else ("tests",),
        smoke_test=None if tests else SMOKE_TEST,
        ruff_format=_uses_ruff(root, repo),
        base_image=args.base_image,
        kit=kit,
        kit_ref=ref,
        config_path=config_rel,
        working_directory=wd,
        branch=args.branch or git.default_branch(repo) or "main",
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", default=".", type=Path, help="the project folder (default: .)"
    )
    parser.add_argument("--data", metavar="FILE", help="the training data (CSV or Parquet)")
    parser.add_argument("--target", metavar="COLUMN", help="the column to predict")
    parser.add_argument(
        "--entrypoint",
        metavar="FILE.py:FUNC",
        help="the function that returns the UNFITTED estimator",
    )
    parser.add_argument("--project", metavar="NAME", help="project name (default: the folder's)")
    parser.add_argument(
        "--kit",
        metavar="OWNER/REPO@REF",
        default=None,
        help="mlcd's repository and the tag or full commit SHA the workflow pins (default: "
        f"this mlcd's GitHub repository, else {DEFAULT_KIT}, at v{__version__})",
    )
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        default=DEFAULT_BASE,
        help=f"base of the serving image (default: {DEFAULT_BASE})",
    )
    parser.add_argument(
        "--workflow",
        metavar="PATH",
        type=Path,
        default=None,
        help="the caller workflow to write (default: .github/workflows/ml.yml at the "
        "repository root; another name for a second project)",
    )
    parser.add_argument(
        "--branch", metavar="NAME", default=None, help="the default branch (default: origin's)"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files that exist (never by default)"
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    from mlcd.config import load_config
    from mlcd.scaffold import githubcheck

    root = args.dir.resolve()
    if not root.is_dir():
        raise UserInputError(f"{args.dir}: no such folder")
    repo = git.toplevel(root)
    plan = plan_for(root, repo, args)
    written: list[Written] = []
    if plan.requirements:
        body = "".join(f"{line}\n" for line in plan.requirement_lines)
        header = "# the model's packages besides scikit-learn, NumPy and pandas (mlcd init)\n"
        _write(root / plan.requirements, header + body, force=args.force, written=written)
    if plan.smoke_test:
        _write(
            root / plan.smoke_test,
            templates.smoke_test_text(plan),
            force=args.force,
            written=written,
        )
    config_path = root / "mlcd.yaml"
    _write(config_path, templates.config_text(plan), force=args.force, written=written)
    workflow = args.workflow or repo / ".github" / "workflows" / "ml.yml"
    if not workflow.is_absolute():
        workflow = repo / workflow
    _write(workflow, templates.workflow_text(plan), force=args.force, written=written)
    loaded = load_config(config_path)
    report = githubcheck.check(loaded, repo)
    if ctx.fmt == "json":
        print(
            json.dumps(
                {
                    "written": [str(w.path) for w in written if not w.skipped],
                    "kept": [str(w.path) for w in written if w.skipped],
                    "project": plan.project,
                    "task": plan.task,
                    "entrypoint": plan.entrypoint,
                    "data": plan.data,
                    "target": plan.target,
                    "settings": [s.__dict__ for s in settings(plan)],
                    "github": {"errors": report.errors, "warnings": report.warnings},
                },
                indent=2,
            ),
            file=ctx.stream,
        )
        return 0
    for item in written:
        shown = item.path.relative_to(repo) if repo in item.path.parents else item.path
        verb = "kept (exists; --force overwrites)" if item.skipped else "wrote"
        ctx.say(f"{verb} {shown}")
    ctx.say(
        f"  project {plan.project}: {plan.task} of `{plan.target}` in {plan.data}, "
        f"model from {plan.entrypoint}"
    )
    ctx.say("\nOn GitHub, before the first push:")
    for number, setting in enumerate(settings(plan), 1):
        ctx.say(f"{number}. {setting.what}\n   {setting.url}")
        if setting.checked:
            ctx.say(f"   checked by: {setting.checked}")
    ctx.say("\nChecked now (mlcd validate --github):")
    for line in report.checked:
        ctx.say(f"  ✅ {line}")
    for line in report.warnings:
        ctx.say(f"  ⚠ {line}")
    for line in report.errors:
        ctx.say(f"  ❌ {line}")
    ctx.say(
        "\nNext: mlcd validate && mlcd run --target local  (everything on this machine's "
        "Docker engine)"
    )
    return 0


COMMAND = Command(
    name="init",
    help="write mlcd.yaml and the caller workflow for an existing repository",
    description="Look at an existing repository and write what mlcd needs: mlcd.yaml "
    "(the data file, its target column and the task, the function that builds the "
    "UNFITTED estimator, found by reading the code with ast and never importing it; "
    "thresholds to raise; staging and production environments on docker-host with hosts "
    "to fill in), .github/workflows/ml.yml (the caller of deliver.yml, pinned, with the "
    "permissions and secrets its jobs need), requirements-model.txt when the entrypoint "
    "imports packages beyond scikit-learn, NumPy and pandas, and a smoke test when the "
    "repository has none. Prints the repository settings and secrets to create, each "
    "with the GitHub page it rests on. Never overwrites a file without --force. When a "
    "choice is ambiguous or nothing fits, exit 2 names the option to pass.",
    example="mlcd init\nmlcd init model --target churn --entrypoint model/train.py:build_model\n"
    "mlcd init --kit acme/mlcd@v1.4.0",
    add_arguments=_arguments,
    run=_run,
)

"""`mlcd github`: show a run where people look on GitHub.

- `mlcd github comment` — create or update the one PR comment (hidden marker) from the bundle;
- `mlcd github release` — the GitHub release of the version `mlcd release` assigned, with the
  model card, metrics, verdict, SBOM and the evidence archive as assets;
- `mlcd github plan` — the project and image name as step outputs (jobs are named by them);
- `mlcd github deployment ENV --state STATE` — a GitHub deployment of that version to ENV and
  its status, so the Environments page shows which model version is live.

The API is configured from the GitHub Actions environment (`GITHUB_API_URL`,
`GITHUB_REPOSITORY`, `GITHUB_TOKEN`); see `mlcd.tools.github`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mlcd import releases
from mlcd.context import Command, Context
from mlcd.contracts import ReleaseDetails, details
from mlcd.errors import UserInputError
from mlcd.evidence import write_json_atomic
from mlcd.github import comment as comment_mod
from mlcd.github import publish, step_outputs
from mlcd.registry import backend_of, open_registry
from mlcd.tools.git import head_sha
from mlcd.tools.github import GitHub, GitHubApiError

# What GitHub answers a GITHUB_TOKEN that lacks a write permission (read-only: Dependabot's
# pull requests, forks' pull requests); a rate limit's 403 says otherwise and is retried.
_READ_ONLY = "resource not accessible by integration"


def _read_only_refusal(error: GitHubApiError) -> bool:
    return _READ_ONLY in str(error).lower()


def _client() -> GitHub:
    return GitHub.from_env(log=lambda line: sys.stderr.write(line + "\n"))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("plan", "comment", "release", "deployment", "outputs"),
        help="what to do on GitHub",
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=None,
        help="deployment: the environment (e.g. staging); outputs: the stage (e.g. lint)",
    )
    parser.add_argument(
        "--state",
        choices=publish.DEPLOYMENT_STATES,
        default="in_progress",
        help="deployment: the status to post (default in_progress; the first call creates "
        "the deployment)",
    )
    parser.add_argument("--url", default=None, help="deployment: the environment's URL")
    parser.add_argument(
        "--release",
        metavar="VERSION",
        default=None,
        help="deployment: the release being deployed, when this run released nothing "
        "(default: what mlcd deploy would take)",
    )
    parser.add_argument(
        "--pr",
        type=int,
        default=None,
        help="comment: the pull request number (default: from GITHUB_EVENT_PATH)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="render what would be sent (into <out>/github/) without calling GitHub",
    )


def _emit(ctx: Context, data: dict[str, object], text: str) -> None:
    if ctx.fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=ctx.stream)
    else:
        ctx.say(text)


def _comment(ctx: Context, args: argparse.Namespace) -> int:
    run = comment_mod.RunInfo.from_env(os.environ)
    # the project names the comment (one per project of the repository); a bundle rendered
    # without its mlcd.yaml (outside a workflow) gets the bare marker
    project = ctx.config.project if ctx.config_path.is_file() else ""
    body = comment_mod.render(ctx.bundle, run, project=project)
    folder = ctx.bundle.stage_dir(publish.FOLDER)
    (folder / "comment.md").write_text(body, "utf-8")
    number = args.pr or comment_mod.pull_request_number(os.environ.get("GITHUB_EVENT_PATH"))
    if args.dry_run or number is None:
        why = "dry run" if args.dry_run else "not a pull request"
        _emit(
            ctx,
            {"posted": False, "reason": why, "file": str(folder / "comment.md")},
            f"⏭️ github comment: {why}; the comment is in {folder / 'comment.md'}",
        )
        return 0
    try:
        posted, created = _client().upsert_comment(number, body, marker=comment_mod.marker(project))
    except GitHubApiError as refused:
        if refused.status != 403 or not _read_only_refusal(refused):
            raise
        # A read-only token (a Dependabot pull request, a fork's): GitHub refuses every write.
        # The job summary holds the same report; the comment is skipped, the run stays green.
        why = (
            "the token cannot write to this pull request (read-only on a Dependabot or "
            "fork pull request, or the caller grants no pull-requests: write)"
        )
        _emit(
            ctx,
            {"posted": False, "reason": why, "file": str(folder / "comment.md")},
            f"::notice title=mlcd::no PR comment: {why}; the report is in the job summary",
        )
        return 0
    record = {
        "posted": True,
        "created": created,
        "pr": number,
        "id": posted.get("id"),
        "html_url": posted.get("html_url"),
    }
    write_json_atomic(folder / "comment.json", record)
    _emit(
        ctx,
        record,
        f"✅ github comment: {'created' if created else 'updated'} on PR "
        f"#{number} ({posted.get('html_url', '')})",
    )
    return 0


def _release(ctx: Context, args: argparse.Namespace) -> int:
    facts = publish.release_facts(ctx.bundle, ctx.config.project, by="github release")
    run = comment_mod.RunInfo.from_env(os.environ)
    if args.dry_run:
        assets = publish.release_assets(ctx.bundle, facts)
        data: dict[str, object] = {"tag": facts.tag, "assets": [name for _, name in assets]}
        _emit(
            ctx,
            data,
            f"⏭️ github release (dry run): {facts.tag} with {', '.join(name for _, name in assets)}",
        )
        return 0
    sha = head_sha(ctx.loaded.root)
    gh = _client()
    onto = None
    if backend_of(ctx.loaded) == "github":
        # the model registry keeps each model version as a GitHub release: this release's
        # assets go there, so one model version is one GitHub release
        model_version = str(
            details(facts.result, ReleaseDetails).model_version if facts.result else None
        )
        onto = gh.release_by_tag(f"{ctx.config.project}-{model_version}")
        if onto is None:
            raise UserInputError(
                f"the model registry has no GitHub release {ctx.config.project}-{model_version}",
                hint="run `mlcd release` with registry.backend github first",
            )
    record = publish.publish_release(
        gh,
        ctx.bundle,
        facts,
        sha=sha,
        run_url=run.run_url,
        latest=ctx.config.registry.github_latest,
        onto=onto,
    )
    _emit(
        ctx,
        record,
        f"✅ github release {record['tag']}: {len(record['assets'])} assets "
        f"({record.get('html_url', '')})",
    )
    return 0


def _deployment_facts(ctx: Context, environment: str, wanted: str | None) -> publish.ReleaseFacts:
    """What is (being) deployed: what `mlcd deploy` rolled out when it has run, else this
    run's release, else the release the deploy will take from the model registry (--release,
    or the newest that passed every `requires:` of the environment)."""
    # the project names the comment (one per project of the repository); a bundle rendered
    # without its mlcd.yaml (outside a workflow) gets the bare marker
    project = ctx.config.project if ctx.config_path.is_file() else ""
    done = publish.deploy_facts(ctx.bundle, project, environment)
    if done is not None:
        return done
    if ctx.bundle.read("release") is not None and not wanted:
        return publish.release_facts(ctx.bundle, project, by="github deployment")
    registry = open_registry(ctx.loaded)
    section = ctx.environment(environment).section
    version = wanted or releases.default_version(registry, list(section.requires))
    if version is None:
        newest = releases.latest(registry)
        if newest is None:
            raise UserInputError(
                f"there is no release to deploy to {environment} in the model registry "
                f"({registry.location})",
                hint="a push to the default branch releases one; or run `mlcd release`",
            )
        version = newest.version
    found = releases.get(registry, version)
    return publish.ReleaseFacts(project, found.version, found.image, None)


def _deployment(ctx: Context, args: argparse.Namespace) -> int:
    environment = args.target
    if not environment:
        raise UserInputError(
            "`mlcd github deployment` needs the environment",
            hint="mlcd github deployment staging --state in_progress",
        )
    if environment not in ctx.config.environments:
        known = ", ".join(ctx.config.environments) or "none"
        raise UserInputError(
            f"{ctx.loaded.path}: no environment `{environment}` (environments: {known})"
        )
    facts = _deployment_facts(ctx, environment, args.release)
    if args.dry_run:
        _emit(
            ctx,
            {"environment": environment, "state": args.state, "version": facts.version},
            f"⏭️ github deployment (dry run): {facts.version} to {environment}: {args.state}",
        )
        return 0
    run = comment_mod.RunInfo.from_env(os.environ)
    record = publish.record_deployment(
        _client(),
        ctx.bundle,
        facts,
        environment=environment,
        state=args.state,
        sha=head_sha(ctx.loaded.root),
        run_url=run.run_url,
        production=ctx.environment(environment).holds_champion,
        url=args.url,
    )
    _emit(
        ctx,
        record,
        f"✅ github deployment {record['id']}: {facts.version} to {environment}: {args.state}",
    )
    return 0


def _outputs(ctx: Context, args: argparse.Namespace) -> int:
    if not args.target:
        raise UserInputError(
            "`mlcd github outputs` needs the stage", hint="mlcd github outputs lint"
        )
    values = step_outputs.write(ctx.bundle, args.target, os.environ)
    _emit(ctx, dict(values), f"{args.target}: {values.get('status')} (step outputs written)")
    return 0


def _plan(ctx: Context) -> int:
    """The facts a workflow's jobs are named and grouped by, before any stage ran: the
    project (artifact names and concurrency groups carry it, so two projects of one
    repository deliver side by side) and the image repository."""
    values = {"project": ctx.config.project, "image-name": ctx.config.image_name}
    step_outputs.append(os.environ, values)
    _emit(ctx, dict(values), f"project {values['project']}, image {values['image-name']}")
    return 0


def _run(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "plan":
        return _plan(ctx)
    if args.action == "outputs":
        return _outputs(ctx, args)
    if args.action == "comment":
        return _comment(ctx, args)
    if args.action == "release":
        return _release(ctx, args)
    return _deployment(ctx, args)


COMMAND = Command(
    name="github",
    help="PR comment, GitHub release and deployments from the evidence bundle",
    description="Show a run on GitHub. `comment` creates or updates the one PR comment "
    "(verdict, metric chart, scan counts, image, artifact links). `release` publishes the "
    "version `mlcd release` assigned as a GitHub release with the model card, metrics, "
    "verdict, SBOM and evidence archive. `deployment ENV --state S` records a deployment of "
    "that version to ENV. `outputs STAGE` writes a stage's result to $GITHUB_OUTPUT and its "
    "summary to $GITHUB_STEP_SUMMARY (used by the composite actions). "
    "Needs GITHUB_REPOSITORY and GITHUB_TOKEN (GITHUB_API_URL optional).",
    example="mlcd github comment --out .mlcd\nmlcd github release\n"
    "mlcd github deployment staging --state in_progress\n"
    "mlcd github deployment staging --state success",
    add_arguments=_arguments,
    run=_run,
)

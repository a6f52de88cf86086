"""`mlcd validate`: check `mlcd.yaml` against the schema."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mlcd import preflight
from mlcd.config import Config, json_schema_text
from mlcd.context import Command, Context
from mlcd.errors import UserInputError

if TYPE_CHECKING:
    from mlcd.rollout.plan import Plan


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print-schema",
        action="store_true",
        help="print the JSON Schema of mlcd.yaml instead of validating",
    )
    parser.add_argument(
        "--github",
        action="store_true",
        help="also check the caller workflow in .github/workflows against the config: it "
        "calls deliver.yml for this config, pins mlcd by a tag or full SHA, grants the "
        "permissions deliver.yml's jobs ask for, passes the deploy secrets the targets need, "
        "and deploys no `local` environment",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    if args.print_schema:
        print(json_schema_text(), end="", file=ctx.stream)
        return 0
    loaded = ctx.loaded  # raises UserInputError (exit 2) listing every problem
    config = loaded.config
    # the files the config names: data and its target column, entrypoint and params, paths
    warnings = preflight.require(loaded)
    github_checked: list[str] = []
    if args.github:
        from mlcd.scaffold import githubcheck
        from mlcd.tools.git import toplevel

        report = githubcheck.check(loaded, toplevel(loaded.root))
        if report.errors:
            raise UserInputError(
                f"{loaded.path}: the caller workflow would not run green on GitHub",
                problems=report.errors,
                hint="`mlcd init --force` rewrites the workflow; docs/github.md has the checklist",
            )
        warnings += report.warnings
        github_checked = report.checked
    plans, slow = _plans(config)
    if ctx.fmt == "json":
        document: dict[str, object] = {
            "valid": True,
            "config": str(loaded.path),
            "project": config.project,
            "warnings": warnings,
            "plans": {env: plan.as_json() for env, plan in plans.items()},
        }
        sticky = _sticky_without_plan(config, plans)
        if sticky:  # what the weights mean where there is no plan to say it
            document["sticky"] = sticky
        if args.github:
            document["github"] = github_checked
        print(json.dumps(document), file=ctx.stream)
    else:
        envs = ", ".join(config.environments) or "none"
        ctx.say(f"✅ {loaded.path}: valid (project {config.project}, environments: {envs})")
        for line in github_checked:
            ctx.say(f"  ✅ {line}")
        for warning in warnings:
            ctx.say(f"  ⚠ {warning}")
        for env, plan in plans.items():
            ctx.say(f"  plan of {env} (canary):")
            for line in plan.lines():
                ctx.say(f"    {line}")
        for env, note in _sticky_without_plan(config, plans).items():
            ctx.say(f"  routing of {env}: {note}")
    if slow:
        raise UserInputError(
            f"{loaded.path}: the canary plan of {', '.join(slow)} cannot decide within "
            "analysis.max-intervals (a step would pause)",
            hint="more traffic (load-test.rps or analysis.expected-rps), a longer "
            "canary.interval, canary.shadow-intervals, wider tolerances; or accept it with "
            "analysis.accept-slow-plan: true (mlcd deploy --accept-plan)",
        )
    return 0


def _sticky_without_plan(config: Config, plans: dict[str, Plan]) -> dict[str, str]:
    """What the canary weights mean with a sticky key, for the environments whose plan
    (which says it) could not be made: no traffic figure until `mlcd deploy` measures one."""
    from mlcd.rollout import plan as plan_mod

    notes: dict[str, str] = {}
    for env, section in config.environments.items():
        note = plan_mod.sticky_note(section)
        if env not in plans and section.strategy == "canary" and note is not None:
            notes[env] = note
    return notes


def _plans(config: Config) -> tuple[dict[str, Plan], list[str]]:
    """Each canary environment's plan at its traffic, and those that cannot decide."""
    from mlcd.rollout import plan as plan_mod

    plans: dict[str, Plan] = {}
    slow: list[str] = []
    for env, section in config.environments.items():
        if section.strategy != "canary" or section.target == "kubernetes":
            continue
        traffic = plan_mod.traffic_of(section)
        if traffic is None:
            continue
        plan = plan_mod.estimate(section, traffic)
        plans[env] = plan
        if not plan.decides and not section.analysis.accept_slow_plan:
            slow.append(env)
    return plans, slow


COMMAND = Command(
    name="validate",
    help="check mlcd.yaml against the schema",
    description="Check the config file, and the files it names, before anything runs: the "
    "schema (strict types, canary steps, ports, metrics of the task), the data file and its "
    "target column, the entrypoint's file, function and parameters (read, never run), and "
    "the lint and test paths. Every problem is listed at once with file:line:column and the "
    "key path; an unknown key suggests the closest known one. Exit 2 when invalid.",
    example="mlcd validate --config model/mlcd.yaml\n"
    "mlcd validate --github\n"
    "mlcd validate --print-schema > mlcd.schema.json",
    add_arguments=_arguments,
    run=_run,
)

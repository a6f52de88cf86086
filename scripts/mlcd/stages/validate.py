"""`mlcd validate`: check `mlcd.yaml` against the schema."""

from __future__ import annotations

import argparse
import json

from mlcd import preflight
from mlcd.config import json_schema_text
from mlcd.context import Command, Context


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--print-schema",
        action="store_true",
        help="print the JSON Schema of mlcd.yaml instead of validating",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    if args.print_schema:
        print(json_schema_text(), end="", file=ctx.stream)
        return 0
    loaded = ctx.loaded  # raises UserInputError (exit 2) listing every problem
    config = loaded.config
    # the files the config names: data and its target column, entrypoint and params, paths
    warnings = preflight.require(loaded)
    if ctx.fmt == "json":
        print(
            json.dumps(
                {
                    "valid": True,
                    "config": str(loaded.path),
                    "project": config.project,
                    "warnings": warnings,
                }
            ),
            file=ctx.stream,
        )
    else:
        envs = ", ".join(config.environments) or "none"
        ctx.say(f"✅ {loaded.path}: valid (project {config.project}, environments: {envs})")
        for warning in warnings:
            ctx.say(f"  ⚠ {warning}")
    return 0


COMMAND = Command(
    name="validate",
    help="check mlcd.yaml against the schema",
    description="Check the config file, and the files it names, before anything runs: the "
    "schema (strict types, canary steps, ports, metrics of the task), the data file and its "
    "target column, the entrypoint's file, function and parameters (read, never run), and "
    "the lint and test paths. Every problem is listed at once with file:line:column and the "
    "key path; an unknown key suggests the closest known one. Exit 2 when invalid.",
    example="mlcd validate --config model/mlcd.yaml\n"
    "mlcd validate --print-schema > mlcd.schema.json",
    add_arguments=_arguments,
    run=_run,
)

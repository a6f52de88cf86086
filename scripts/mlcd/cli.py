"""The `mlcd` command line. It only wires: options, the command list and one error handler."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from mlcd import __version__, deps, github, pipeline, report
from mlcd.context import Command, Context
from mlcd.errors import MlcdError
from mlcd.evidence import is_write_failure, write_failure
from mlcd.scaffold import command as init
from mlcd.stages import (
    build,
    deploy,
    evaluate,
    judge,
    lint,
    release,
    scan,
    serve,
    test,
    train,
    validate,
    verify,
)

# The commands, in the order `mlcd --help` lists them. Only commands that work are listed.
COMMANDS: list[Command] = [
    init.COMMAND,
    validate.COMMAND,
    deps.COMMAND,
    lint.COMMAND,
    test.COMMAND,
    train.COMMAND,
    evaluate.COMMAND,
    build.COMMAND,
    scan.COMMAND,
    release.COMMAND,
    serve.COMMAND,
    *deploy.COMMANDS,
    verify.COMMAND,
    judge.COMMAND,
    pipeline.COMMAND,
    report.COMMAND,
    github.COMMAND,
]

_EXIT_CODES = """exit codes:
  0  done, every gate passed
  1  a gate said no (findings, failed tests, a metric below its bound, a rollback)
  2  the input is wrong (config, arguments, missing files); the message says where
  3  the environment lacks something (Docker, trivy, a registry); the message says how to get it
"""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=Path(os.environ.get("MLCD_CONFIG", "mlcd.yaml")),
        help="the project's config file (default: mlcd.yaml; env MLCD_CONFIG)",
    )
    group.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=Path(os.environ.get("MLCD_OUT", ".mlcd")),
        help="the run folder for the evidence bundle (default: .mlcd; env MLCD_OUT)",
    )
    group.add_argument(
        "--format",
        choices=("text", "json"),
        default=os.environ.get("MLCD_FORMAT", "text"),
        help="text for people, json for tools (default: text)",
    )
    group.add_argument("--verbose", "-v", action="store_true", help="show a traceback on failures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcd",
        description="Continuous delivery for machine-learning models: lint, test, train, "
        "evaluate, build, scan, release and roll out, with evidence for every step.",
        epilog=_EXIT_CODES + "\nexample:\n  mlcd run --config model/mlcd.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlcd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog="example:\n"
            + "\n".join(f"  {line}" for line in command.example.splitlines())
            + "\n\n"
            + _EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(child)
        _common(child)
        child.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args._command
    ctx = Context(config_path=args.config, out=args.out, fmt=args.format, verbose=args.verbose)
    try:
        return command.run(ctx, args)
    except MlcdError as exc:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code
    except OSError as exc:
        # a write that no stage runner caught (a report, run.json): exit 3 with the path
        if not is_write_failure(exc):
            raise
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        error = write_failure(exc)
        sys.stderr.write(error.render() + "\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("mlcd: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""`mlcd run`: the whole pipeline, locally, in the order the workflow runs it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlcd import environment, preflight, runreport, stagenames
from mlcd.context import Command, Context
from mlcd.contracts import DeployDetails, ReleaseDetails, details, train_files
from mlcd.errors import GateFailed, MlcdError, UserInputError
from mlcd.evidence import (
    StageOutcome,
    StageResult,
    require_writable,
    utc_now,
    write_failure,
    write_json_atomic,
)
from mlcd.progress import StageProgress, fmt_seconds
from mlcd.stages import build, deploy, evaluate, lint, release, scan, test, train


@dataclass(frozen=True)
class Step:
    """One stage of the pipeline as `mlcd run` runs it."""

    name: str
    run: Callable[[Context], StageResult]


def _deploy_step(env: str) -> Step:
    return Step(stagenames.deploy(env), lambda ctx: deploy.stage(ctx, env))


def _deploy_this_runs_release(env: str, since: str) -> Step:
    """A deploy step of a run that also releases: it deploys exactly the release this run
    made, and when the release did not pass (with --keep-going) it deploys nothing,
    rather than some older release of the registry."""

    def run(ctx: Context) -> StageResult:
        made = ctx.bundle.read("release")
        if made is not None and made.started < since:
            made = None  # an earlier run's release, not this one's
        version = details(made, ReleaseDetails).version if made is not None else ""
        if made is None or made.status != "pass" or not version:
            status = made.status if made is not None else "not run"
            return ctx.run_stage(
                stagenames.deploy(env),
                lambda: StageOutcome(
                    "skipped",
                    f"nothing deployed to {env}: this run's release did not pass ({status})",
                    reasons=[
                        (
                            "a run deploys only the release it made; deploy an earlier one with "
                            f"`mlcd deploy {env} --release VERSION`"
                        )
                    ],
                ),
            )
        return deploy.stage(ctx, env, release=version)

    return Step(stagenames.deploy(env), run)


def steps(ctx: Context) -> list[Step]:
    """The stages in the workflow's order (docs/foundation.md)."""
    return [
        Step("lint", lint.stage),
        Step("test", test.stage),
        Step("train", train.stage),
        Step("evaluate", evaluate.stage),
        Step("build", build.stage),
        Step("scan", scan.stage),
        Step("release", release.stage),
        # one deploy step per environment, each after the environments it requires
        *(_deploy_step(env) for env in environment.ordered(ctx.loaded)),
    ]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run the remaining stages after one fails (the run still exits non-zero)",
    )
    parser.add_argument(
        "--only",
        metavar="STAGE[,STAGE…]",
        default=None,
        help="run only these stages, in pipeline order",
    )
    parser.add_argument(
        "--skip", metavar="STAGE[,STAGE…]", default=None, help="leave these stages out"
    )
    parser.add_argument(
        "--target",
        choices=("local",),
        default=None,
        help="local: deploy every environment on this machine's Docker engine, whatever its "
        "target in mlcd.yaml (docker-host, kubernetes), with the same strategy and analysis; "
        "the way to rehearse a config whose servers are still to fill in",
    )


def _select(all_steps: list[Step], only: str | None, skip: str | None) -> list[Step]:
    names = [s.name for s in all_steps]
    chosen = list(all_steps)
    for option, value in (("--only", only), ("--skip", skip)):
        if value is None:
            continue
        wanted = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise UserInputError(
                f"{option} names unknown stage(s): {', '.join(unknown)}",
                hint=f"the stages are: {', '.join(names)}",
            )
        if option == "--only":
            chosen = [s for s in chosen if s.name in wanted]
        else:
            chosen = [s for s in chosen if s.name not in wanted]
    return chosen


def _run(ctx: Context, args: argparse.Namespace) -> int:
    if args.target == "local":
        ctx.local_targets = True
        ctx.reload()  # load it again, on the local target
    _ = ctx.loaded  # a broken config stops the run before any stage starts
    selected = _select(steps(ctx), args.only, args.skip)
    if any(s.name == "release" for s in selected):
        since = utc_now()
        selected = [
            _deploy_this_runs_release(env, since)
            if (env := stagenames.deploy_env(s.name)) is not None
            else s
            for s in selected
        ]
    if not selected:
        raise UserInputError(
            "--only and --skip leave no stage to run",
            hint=f"the stages are: {', '.join(s.name for s in steps(ctx))}",
        )
    # what `mlcd validate` checks in the files the config names, for the stages that use
    # them: a missing data file or entrypoint function stops the run before lint and test
    warnings = preflight.require(ctx.loaded, {s.name for s in selected})
    require_writable(ctx.out)  # run.json and every stage's result go there
    # In json mode stdout carries only the final JSON document; progress goes to stderr.
    progress = StageProgress(ctx.stream if ctx.fmt == "text" else sys.stderr)
    ctx.in_pipeline = True
    ctx.progress = progress.update
    started, clock = utc_now(), time.monotonic()
    if ctx.fmt == "text":
        count = len(selected)
        print(f"mlcd run: {count} stage{'s' * (count != 1)} on {ctx.loaded.path}", file=ctx.stream)
        if ctx.local_targets:
            print("  every environment on the local target (--target local)", file=ctx.stream)
        for warning in warnings:
            print(f"  ⚠ {warning}", file=ctx.stream)
    records: list[dict[str, object]] = []
    exit_code = 0
    stopped_at: str | None = None
    for step in selected:
        progress.start(step.name)
        try:
            result = step.run(ctx)
        except MlcdError as exc:
            elapsed = progress.finish("error", exc.message)
            records.append(
                {
                    "stage": step.name,
                    "status": "error",
                    "duration_s": round(elapsed, 3),
                    "summary": exc.message,
                    "exit_code": exc.exit_code,
                    "reasons": [*exc.problems, *([f"hint: {exc.hint}"] if exc.hint else [])],
                }
            )
            exit_code = exit_code or exc.exit_code
            if not args.keep_going:
                stopped_at = step.name
                # The CLI's handler prints the error itself (and a traceback with --verbose).
                _finish(ctx, started=started, clock=clock, records=records, stopped_at=stopped_at)
                raise
            continue
        except BaseException:
            progress.finish("error", "interrupted")
            raise
        progress.finish(result.status, result.summary)
        records.append(
            {
                "stage": result.stage,
                "status": result.status,
                "duration_s": result.duration_s,
                "summary": result.summary,
                "reasons": result.reasons if result.status != "pass" else [],
            }
        )
        if result.status == "fail":
            exit_code = exit_code or GateFailed.exit_code
            if not args.keep_going:
                stopped_at = step.name
                break
    return _finish(ctx, started=started, clock=clock, records=records, stopped_at=stopped_at)


def _exit_code(records: list[dict[str, object]]) -> int:
    """The first failing stage decides: 1 for a gate, its own code for an error."""
    for rec in records:
        if rec["status"] == "fail":
            return GateFailed.exit_code
        if rec["status"] == "error":
            code = rec.get("exit_code", 2)
            return code if isinstance(code, int) else 2
    return 0


_REASONS_SHOWN = 5


def _finish(
    ctx: Context,
    *,
    started: str,
    clock: float,
    records: list[dict[str, object]],
    stopped_at: str | None,
) -> int:
    """Write run.json and print the run summary; return the run's exit code."""
    duration = time.monotonic() - clock
    exit_code = _exit_code(records)
    status = "pass" if exit_code == 0 else ("fail" if exit_code == 1 else "error")
    try:
        write_json_atomic(
            ctx.out / "run.json",
            {
                "started": started,
                "duration_s": round(duration, 3),
                "status": status,
                "exit_code": exit_code,
                "stopped_at": stopped_at,
                "config": str(ctx.loaded.path),
                "inputs": ctx.inputs,
                "stages": records,
            },
        )
        report = runreport.write_html(ctx.out, [s.name for s in steps(ctx)])
    except OSError as exc:
        raise write_failure(exc, ctx.out) from exc
    if ctx.fmt == "json":
        print(
            json.dumps(
                {
                    "status": status,
                    "exit_code": exit_code,
                    "stopped_at": stopped_at,
                    "stages": records,
                    "report": str(report),
                },
                indent=2,
            ),
            file=ctx.stream,
        )
        return exit_code
    out = ctx.stream
    print("", file=out)
    print(f"{'stage':<22}{'outcome':<10}{'time':>8}  summary", file=out)
    for rec in records:
        print(
            f"{rec['stage']!s:<22}{rec['status']!s:<10}"
            f"{fmt_seconds(float(str(rec['duration_s']))):>8}  {rec['summary']}",
            file=out,
        )
    for rec in records:
        reasons = rec.get("reasons")
        # An error that stops the run is printed by the CLI's handler; don't say it twice.
        said_by_handler = rec["status"] == "error" and rec["stage"] == stopped_at
        if not isinstance(reasons, list) or not reasons or said_by_handler:
            continue
        print(f"\n{rec['stage']} {rec['status']}:", file=out)
        for reason in reasons[:_REASONS_SHOWN]:
            print(f"  - {reason}", file=out)
        if len(reasons) > _REASONS_SHOWN:
            more = len(reasons) - _REASONS_SHOWN
            print(f"  … {more} more in {ctx.out / str(rec['stage'])}/summary.md", file=out)
    verdict = "passed" if exit_code == 0 else f"stopped at {stopped_at}" if stopped_at else "failed"
    print(
        f"\nrun {verdict} in {fmt_seconds(duration)} (exit {exit_code}); evidence in "
        f"{ctx.out}/; report: {report}",
        file=out,
    )
    for line in _where_to_look(ctx, {str(rec["stage"]) for rec in records}):
        print(line, file=out)
    return exit_code


def _where_to_look(ctx: Context, ran: set[str]) -> list[str]:
    """The environments this run deployed to: their URLs, and a request to try on them."""
    config_arg = f"--config {ctx.config_path}"
    lines: list[str] = []
    first_url = ""
    for env in ctx.config.environments:
        if stagenames.deploy(env) not in ran:
            continue
        result = ctx.bundle.read(stagenames.deploy(env))
        if result is None or result.status != "pass":
            continue
        deployed = details(result, DeployDetails)
        if "router" not in deployed.model_fields_set:
            continue
        url = f"http://{deployed.router}/predict"
        first_url = first_url or url
        if not lines:
            lines.append("\nenvironments:")
        version = deployed.version if "version" in deployed.model_fields_set else "?"
        lines.append(f"  {env:<12} {url}  (release {version}; mlcd status {env} {config_arg})")
    if lines:
        body = json.dumps({"instances": [_sample_row(ctx)]}, separators=(",", ":"))
        lines.append(
            f"try it:\n  curl -s -X POST {first_url} "
            f"-H 'content-type: application/json' -d '{body}'"
        )
    return lines


def _sample_row(ctx: Context) -> list[object]:
    """The first held-out row (features only), for the example request."""
    holdout = train_files(ctx.bundle).holdout
    try:
        with holdout.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            row = next(reader)
    except (OSError, StopIteration):
        return []
    target = ctx.config.model.target
    values: list[object] = []
    for name, cell in zip(header, row, strict=False):
        if name == target:
            continue
        try:
            values.append(float(cell))
        except ValueError:
            values.append(cell)
    return values


COMMAND = Command(
    name="run",
    help="the whole pipeline, locally, in the workflow's order",
    description="Run every stage in order (lint, test, …), stopping at the first that fails "
    "unless --keep-going. Shows live progress on a terminal and plain lines elsewhere, and "
    "writes <out>/run.json.",
    example="mlcd run --config model/mlcd.yaml\nmlcd run --only lint,test --keep-going\n"
    "mlcd run --target local  # docker-host environments rehearsed on this machine",
    add_arguments=_arguments,
    run=_run,
)

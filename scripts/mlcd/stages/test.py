"""`mlcd test`: the project's pytest suite with JUnit XML and a coverage gate."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mlcd.context import Command, Context, no_arguments
from mlcd.errors import UserInputError
from mlcd.evidence import StageOutcome, StageResult
from mlcd.tools import pytest

STAGE = "test"


def _coverage_sources(ctx: Context) -> list[Path]:
    configured = ctx.config.test.coverage_source
    if configured is not None:
        return [ctx.loaded.resolve(p) for p in configured]
    module = ctx.config.model.entrypoint.rsplit(":", 1)[0]
    if module.endswith(".py"):
        return [ctx.loaded.resolve(module).parent]
    return [ctx.loaded.root]


def _percent(value: float | None, minimum: float) -> str:
    """One decimal; a figure below the minimum is cut, never rounded up to it."""
    if value is None:
        return "n/a"
    if value < minimum:
        value = math.floor(value * 10) / 10
    return f"{value:.1f}%"


def _body(ctx: Context) -> StageOutcome:
    cfg = ctx.config.test
    paths = []
    for rel in cfg.paths:
        path = ctx.loaded.resolve(rel)
        if not path.exists():
            raise UserInputError(
                f"{ctx.loaded.path}: test.paths names `{rel}`, which does not exist ({path})"
            )
        paths.append(path)
    folder = ctx.bundle.stage_dir(STAGE)
    junit = (folder / "junit.xml").resolve()
    cov_json = (folder / "coverage.json").resolve()
    ctx.progress("pytest")
    outcome = pytest.run_tests(
        paths,
        cwd=ctx.loaded.root,
        cov_sources=_coverage_sources(ctx),
        junit=junit,
        cov_json=cov_json,
        cov_exclude=paths,
        exclude=ctx.exclusions,
    )
    if outcome.returncode == 5 or not outcome.cases:
        raise UserInputError(
            f"pytest found no tests in {', '.join(cfg.paths)}",
            hint="a test stage with no tests checks nothing: add tests or fix test.paths",
        )
    counts = {
        k: sum(c.outcome == k for c in outcome.cases)
        for k in ("passed", "failed", "error", "skipped")
    }
    coverage = outcome.coverage_percent
    reasons = [f"FAILED {c.name}: {c.message}".rstrip(": ") for c in outcome.failed]
    gated = cfg.min_coverage > 0
    low_coverage = gated and (coverage is None or coverage < cfg.min_coverage)
    cov_text = _percent(coverage, cfg.min_coverage)
    if coverage is None:
        reasons.append(
            "coverage: no figure (nothing measured outside the tests; see test.coverage-source)"
        )
    elif low_coverage:
        reasons.append(f"coverage {cov_text} < minimum {cfg.min_coverage:g}%")
    else:
        reasons.append(f"coverage {cov_text} ≥ minimum {cfg.min_coverage:g}%")
    failed = bool(outcome.failed) or low_coverage
    summary = (
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped; coverage {cov_text} (min {cfg.min_coverage:g}%)"
    )
    md = [f"### {'❌' if failed else '✅'} test: {summary}", ""]
    if outcome.failed:
        md += ["Failed tests:", ""]
        md += [f"- `{c.name}` — {c.message}" for c in outcome.failed]
        md.append("")
    md.append(f"Coverage: **{cov_text}** (minimum {cfg.min_coverage:g}%)")
    if outcome.failed and outcome.output_tail:
        md += [
            "",
            "<details><summary>pytest output</summary>",
            "",
            "```",
            outcome.output_tail,
            "```",
            "</details>",
        ]
    return StageOutcome(
        status="fail" if failed else "pass",
        summary=summary,
        reasons=reasons,
        metrics={**counts, "coverage_percent": coverage},
        artifacts={"junit": ctx.bundle.relative(junit), "coverage": ctx.bundle.relative(cov_json)},
        markdown="\n".join(md) + "\n",
    )


def stage(ctx: Context) -> StageResult:
    return ctx.run_stage(STAGE, lambda: _body(ctx))


def _run(ctx: Context, _args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx))


COMMAND = Command(
    name="test",
    help="pytest on test.paths with JUnit XML and a coverage gate",
    description="Run the project's tests with pytest. Writes test/junit.xml and "
    "test/coverage.json. Fails on any failed or errored test and on coverage below "
    "test.min-coverage; the summary names each failed test and the coverage figure.",
    example="mlcd test --config model/mlcd.yaml",
    add_arguments=no_arguments,
    run=_run,
)

"""`mlcd lint`: ruff (check and format) and bandit on `lint.paths`, one merged SARIF."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mlcd.context import Command, Context, no_arguments
from mlcd.errors import UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.sarif import SarifResult, SarifRun, render
from mlcd.tools import bandit, ruff
from mlcd.tools.git import toplevel

STAGE = "lint"
_BANDIT_LEVEL = {"high": "error", "medium": "warning", "low": "note"}
_LISTED = 20


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _rule_name(url: str | None) -> str | None:
    """ruff's rule name (`unused-import`) from its documentation address."""
    if not url:
        return None
    return url.rstrip("/").rsplit("/", 1)[-1] or None


def lint_paths(ctx: Context) -> list[Path]:
    paths = []
    for rel in ctx.config.lint.paths:
        path = ctx.loaded.resolve(rel)
        if not path.exists():
            raise UserInputError(
                f"{ctx.loaded.path}: lint.paths names `{rel}`, which does not exist "
                f"(looked for {path})"
            )
        paths.append(path)
    return paths


def _body(ctx: Context) -> StageOutcome:
    cfg = ctx.config.lint
    root = ctx.loaded.root
    repo = toplevel(root)
    paths = lint_paths(ctx)
    ctx.progress("ruff check")
    ruff_findings = ruff.check(paths, cwd=root)
    unformatted = ruff.format_check(paths, cwd=root) if cfg.ruff_format else []
    ctx.progress("bandit")
    bandit_findings = bandit.scan(paths, cwd=root)

    threshold = bandit.SEVERITIES.index(cfg.bandit_severity)
    bandit_failing = [
        f for f in bandit_findings if bandit.SEVERITIES.index(f.severity) >= threshold
    ]

    ruff_run = SarifRun("ruff", _pkg_version("ruff"), "https://docs.astral.sh/ruff/")
    for f in ruff_findings:
        ruff_run.add_rule(
            f.code, short=_rule_name(f.url) or f.message, help_uri=f.url, level="error"
        )
        ruff_run.results.append(SarifResult(f.code, "error", f.message, f.path, f.line, f.column))
    for item in unformatted:
        ruff_run.add_rule(
            "format", short="file is not formatted as `ruff format` would", level="error"
        )
        ruff_run.results.append(
            SarifResult(
                "format", "error", "would be reformatted by `ruff format`", item.path, item.line
            )
        )
    bandit_run = SarifRun("bandit", _pkg_version("bandit"), "https://bandit.readthedocs.io/")
    for b in bandit_findings:
        level = _BANDIT_LEVEL.get(b.severity, "note")
        bandit_run.add_rule(b.test_id, short=b.test_name, help_uri=b.url, level=level)
        bandit_run.results.append(
            SarifResult(
                b.test_id,
                level,
                b.message,
                b.path,
                b.line,
                b.column,
                {"severity": b.severity, "confidence": b.confidence},
            )
        )
    folder = ctx.bundle.stage_dir(STAGE)
    sarif_path = folder / "lint.sarif"
    write_json_atomic(sarif_path, render([ruff_run, bandit_run], root=repo))

    def where(path: Path, line: int) -> str:
        try:
            rel = path.relative_to(repo).as_posix()
        except ValueError:
            rel = str(path)
        return f"{rel}:{line}"

    listed: list[str] = []
    listed += [f"ruff {f.code} {where(f.path, f.line)}: {f.message}" for f in ruff_findings]
    listed += [f"ruff format {where(u.path, u.line)}: would be reformatted" for u in unformatted]
    listed += [
        f"bandit {b.test_id} ({b.severity}) {where(b.path, b.line)}: {b.message}"
        for b in bandit_failing
    ]
    n_ruff = len(ruff_findings) + len(unformatted)
    n_bandit_below = len(bandit_findings) - len(bandit_failing)
    failed = n_ruff > 0 or bool(bandit_failing)
    summary = (
        f"ruff: {n_ruff} finding{'s' * (n_ruff != 1)}, bandit: {len(bandit_failing)} at or above "
        f"{cfg.bandit_severity} ({n_bandit_below} below)"
    )
    md = [f"### {'❌' if failed else '✅'} lint: {summary}", ""]
    md.append("| tool | findings | gate |")
    md.append("|---|---:|---|")
    md.append(f"| ruff check | {len(ruff_findings)} | any finding fails |")
    md.append(f"| ruff format | {len(unformatted)} | any file fails |")
    md.append(f"| bandit | {len(bandit_findings)} | {cfg.bandit_severity} and above fails |")
    if listed:
        md += ["", "First findings:", ""]
        md += [f"- `{line}`" for line in listed[:_LISTED]]
        if len(listed) > _LISTED:
            md.append(f"- … and {len(listed) - _LISTED} more in `lint/lint.sarif`")
    return StageOutcome(
        status="fail" if failed else "pass",
        summary=summary,
        reasons=listed,
        metrics={
            "ruff_findings": len(ruff_findings),
            "ruff_unformatted": len(unformatted),
            "bandit_findings": len(bandit_findings),
            "bandit_failing": len(bandit_failing),
        },
        artifacts={"sarif": ctx.bundle.relative(sarif_path)},
        markdown="\n".join(md) + "\n",
    )


def stage(ctx: Context) -> StageResult:
    return ctx.run_stage(STAGE, lambda: _body(ctx))


def _run(ctx: Context, _args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx))


COMMAND = Command(
    name="lint",
    help="ruff and bandit on lint.paths; one merged SARIF",
    description="Run `ruff check`, `ruff format --check` and bandit on the paths in "
    "lint.paths. Writes lint/lint.sarif (SARIF 2.1.0, one run per tool) and a summary. "
    "Fails on any ruff finding and on bandit findings at or above lint.bandit-severity.",
    example="mlcd lint --config model/mlcd.yaml\nmlcd lint --format json | jq .metrics",
    add_arguments=no_arguments,
    run=_run,
)

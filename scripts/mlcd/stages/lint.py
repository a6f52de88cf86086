"""`mlcd lint`: ruff (check and format) and bandit on `lint.paths`, one merged SARIF."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mlcd.context import Command, Context, no_arguments
from mlcd.errors import UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.sarif import SarifResult, SarifRun, render
from mlcd.tools import bandit, ruff
from mlcd.tools.bandit import BanditFinding
from mlcd.tools.git import toplevel
from mlcd.tools.ruff import RuffFinding, Unformatted

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


@dataclass(frozen=True)
class _Found:
    """What ruff and bandit found, and the bandit findings the gate counts."""

    ruff: list[RuffFinding]
    unformatted: list[Unformatted]
    bandit: list[BanditFinding]
    bandit_failing: list[BanditFinding]

    @property
    def n_ruff(self) -> int:
        return len(self.ruff) + len(self.unformatted)

    @property
    def failed(self) -> bool:
        return self.n_ruff > 0 or bool(self.bandit_failing)


def _collect(ctx: Context) -> _Found:
    cfg = ctx.config.lint
    root = ctx.loaded.root
    paths = lint_paths(ctx)
    ctx.progress("ruff check")
    exclude = ctx.exclusions
    ruff_findings = [
        f for f in ruff.check(paths, cwd=root, exclude=exclude) if not exclude.excludes(f.path)
    ]
    unformatted = (
        [
            u
            for u in ruff.format_check(paths, cwd=root, exclude=exclude)
            if not exclude.excludes(u.path)
        ]
        if cfg.ruff_format
        else []
    )
    ctx.progress("bandit")
    bandit_findings = [
        f for f in bandit.scan(paths, cwd=root, exclude=exclude) if not exclude.excludes(f.path)
    ]
    threshold = bandit.SEVERITIES.index(cfg.bandit_severity)
    failing = [f for f in bandit_findings if bandit.SEVERITIES.index(f.severity) >= threshold]
    return _Found(ruff_findings, unformatted, bandit_findings, failing)


def _sarif_runs(found: _Found) -> list[SarifRun]:
    ruff_run = SarifRun("ruff", _pkg_version("ruff"), "https://docs.astral.sh/ruff/")
    for f in found.ruff:
        ruff_run.add_rule(
            f.code, short=_rule_name(f.url) or f.message, help_uri=f.url, level="error"
        )
        ruff_run.results.append(SarifResult(f.code, "error", f.message, f.path, f.line, f.column))
    for item in found.unformatted:
        ruff_run.add_rule(
            "format", short="file is not formatted as `ruff format` would", level="error"
        )
        ruff_run.results.append(
            SarifResult(
                "format", "error", "would be reformatted by `ruff format`", item.path, item.line
            )
        )
    bandit_run = SarifRun("bandit", _pkg_version("bandit"), "https://bandit.readthedocs.io/")
    for b in found.bandit:
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
    return [ruff_run, bandit_run]


def _listed(found: _Found, repo: Path) -> list[str]:
    def where(path: Path, line: int) -> str:
        try:
            rel = path.relative_to(repo).as_posix()
        except ValueError:
            rel = str(path)
        return f"{rel}:{line}"

    listed: list[str] = []
    listed += [f"ruff {f.code} {where(f.path, f.line)}: {f.message}" for f in found.ruff]
    listed += [
        f"ruff format {where(u.path, u.line)}: would be reformatted" for u in found.unformatted
    ]
    listed += [
        f"bandit {b.test_id} ({b.severity}) {where(b.path, b.line)}: {b.message}"
        for b in found.bandit_failing
    ]
    return listed


def _markdown(found: _Found, summary: str, listed: list[str], severity: str) -> str:
    md = [f"### {'❌' if found.failed else '✅'} lint: {summary}", ""]
    md.append("| tool | findings | gate |")
    md.append("|---|---:|---|")
    md.append(f"| ruff check | {len(found.ruff)} | any finding fails |")
    md.append(f"| ruff format | {len(found.unformatted)} | any file fails |")
    md.append(f"| bandit | {len(found.bandit)} | {severity} and above fails |")
    if listed:
        md += ["", "First findings:", ""]
        md += [f"- `{line}`" for line in listed[:_LISTED]]
        if len(listed) > _LISTED:
            md.append(f"- … and {len(listed) - _LISTED} more in `lint/lint.sarif`")
    return "\n".join(md) + "\n"


def _write(ctx: Context, found: _Found) -> StageOutcome:
    """lint.sarif and the stage's record."""
    repo = toplevel(ctx.loaded.root)
    severity = ctx.config.lint.bandit_severity
    sarif_path = ctx.bundle.stage_dir(STAGE) / "lint.sarif"
    write_json_atomic(sarif_path, render(_sarif_runs(found), root=repo))
    listed = _listed(found, repo)
    n_ruff = found.n_ruff
    n_bandit_below = len(found.bandit) - len(found.bandit_failing)
    summary = (
        f"ruff: {n_ruff} finding{'s' * (n_ruff != 1)}, bandit: {len(found.bandit_failing)} at "
        f"or above {severity} ({n_bandit_below} below)"
    )
    return StageOutcome(
        status="fail" if found.failed else "pass",
        summary=summary,
        reasons=listed,
        metrics={
            "ruff_findings": len(found.ruff),
            "ruff_unformatted": len(found.unformatted),
            "bandit_findings": len(found.bandit),
            "bandit_failing": len(found.bandit_failing),
        },
        artifacts={"sarif": ctx.bundle.relative(sarif_path)},
        markdown=_markdown(found, summary, listed, severity),
    )


def _body(ctx: Context) -> StageOutcome:
    """Run ruff and bandit, then write the SARIF log and the record."""
    return _write(ctx, _collect(ctx))


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

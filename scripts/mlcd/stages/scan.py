"""`mlcd scan`: Trivy (image, Dockerfile, repository secrets), Clair reports and the
model-artifact scanner, all judged by one policy.

Writes `scan/summary.md`, `scan/scan.sarif` (one merged SARIF 2.1.0 log within GitHub's
upload limits), `scan/findings.json` (every finding, secrets redacted, with its gate
decision) and `scan/sbom.cdx.json` (the image's CycloneDX SBOM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd import modelio, projectcode
from mlcd.context import Command, Context
from mlcd.contracts import BuildDetails, details
from mlcd.errors import EnvironmentMissing, MlcdError, UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.security import clair, modelscan
from mlcd.security.findings import SEVERITIES, Finding
from mlcd.security.ignorefile import IgnoreEntry, load_ignore_file
from mlcd.security.policy import Policy, Verdict, judge
from mlcd.security.sarif_report import SarifOutcome, ToolInfo, build_sarif
from mlcd.security.scanners import (
    ClairReportScanner,
    DockerfileScanner,
    ImageScanner,
    ModelScanner,
    Part,
    SecretScanner,
)
from mlcd.tools import trivy
from mlcd.tools.git import toplevel

STAGE = "scan"
_BUNDLE_MODEL_SUFFIXES = (".skops", ".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt")
_LISTED = 25


@dataclass(frozen=True)
class ScanOptions:
    """What the command line adds to the config."""

    image: str | None = None
    models: tuple[Path, ...] = ()
    clair_reports: tuple[Path, ...] = ()
    dockerfile: Path | None = None
    skip_image: bool = False


def _shown(path: Path, repo: Path) -> str:
    try:
        return path.resolve().relative_to(repo).as_posix()
    except ValueError:
        return str(path)


def _image(ctx: Context, opts: ScanOptions) -> tuple[str | None, str]:
    """The image to scan and, when there is none, why."""
    if opts.skip_image:
        return None, "skipped: --no-image"
    if opts.image:
        return opts.image, ""
    build = ctx.bundle.read("build")
    if build is None:
        return None, (
            f"skipped: no image — `mlcd build` has not run in {ctx.out} and --image was not given"
        )
    image = details(build, BuildDetails).image
    if build.status != "pass" or not image:
        return None, f"skipped: the build stage did not produce an image (status {build.status})"
    return image, ""


def _model_files(ctx: Context, opts: ScanOptions) -> list[Path]:
    found: list[Path] = []
    for path in opts.models:
        if not path.is_file():
            raise UserInputError(
                f"--model {path}: no such file", hint="pass the path of a model file to scan"
            )
        found.append(path.resolve())
    root = ctx.out.resolve()
    if root.is_dir():
        scan_dir = root / STAGE
        for path in sorted(root.rglob("*")):
            if (
                path.suffix in _BUNDLE_MODEL_SUFFIXES
                and path.is_file()
                and scan_dir not in path.parents
                and path.resolve() not in found
            ):
                found.append(path.resolve())
    return found


def _project_trust(ctx: Context, path: Path) -> list[str]:
    """The skops types of this model file that the project trusts: classes defined in its
    own source and its `model.trusted-types` (docs/serving.md)."""
    if path.suffix != ".skops":
        return []
    try:
        needed = modelio.needed_types(path)
    except MlcdError:
        return []  # the scanner reports an unreadable file itself
    report = projectcode.classify(needed, ctx.loaded.root, ctx.config.model.trusted_types)
    return [*report.project, *report.declared]


def _dockerfile(ctx: Context, opts: ScanOptions, repo: Path) -> Path | None:
    if opts.dockerfile is not None:
        if not opts.dockerfile.is_file():
            raise UserInputError(f"--dockerfile {opts.dockerfile}: no such file")
        return opts.dockerfile.resolve()
    build = ctx.bundle.read("build")
    if build is not None:
        named = details(build, BuildDetails).dockerfile
        if named and Path(named).is_file():
            return Path(named).resolve()
        shipped = ctx.out / "build" / "context" / "Dockerfile"
        if shipped.is_file():
            return shipped.resolve()
    for folder in (ctx.loaded.root, repo):
        candidate = folder / "Dockerfile"
        if candidate.is_file():
            return candidate.resolve()
    return None


def _cache_dir(ctx: Context) -> Path:
    """Where Trivy's database lives: MLCD_TRIVY_CACHE, scan.db, TRIVY_CACHE_DIR, default."""
    env = os.environ.get("MLCD_TRIVY_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    if ctx.config.scan.db:
        return ctx.loaded.resolve(ctx.config.scan.db)
    env = os.environ.get("TRIVY_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return trivy.default_cache_dir()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def _entry_label(entry: IgnoreEntry) -> str:
    return entry.id + (f" ({entry.package})" if entry.package else "")


def _markdown_table(verdict: Verdict, parts: list[Part]) -> list[str]:
    md = ["| target | " + " | ".join(reversed(SEVERITIES)) + " | failing | status |"]
    md.append("|---|" + "---:|" * (len(SEVERITIES) + 1) + "---|")
    fail_ids = {id(j.finding) for j in verdict.failing}
    totals: Counter[str] = Counter()
    for part in parts:
        counts = Counter(f.severity for f in part.findings)
        totals.update(counts)
        failing = sum(id(f) in fail_ids for f in part.findings)
        status = "scanned" if part.scanned else _cell(part.reason)
        if part.scanned and part.reason:  # e.g. "vulnerabilities NOT scanned: no Trivy database…"
            status += f"; **{_cell(part.reason.split(': ', 1)[0])}**"
        md.append(
            f"| {_cell(part.label)} | "
            + " | ".join(str(counts.get(s, 0)) for s in reversed(SEVERITIES))
            + f" | {failing} | {status} |"
        )
    md.append(
        "| **total** | "
        + " | ".join(str(totals.get(s, 0)) for s in reversed(SEVERITIES))
        + f" | {len(verdict.failing)} | |"
    )
    return md


def _markdown_failing(verdict: Verdict) -> list[str]:
    if not verdict.failing:
        return []
    md = ["", f"**Failing findings** ({len(verdict.failing)}):", ""]
    md.append("| severity | id | package / file | installed | fixed | target | title |")
    md.append("|---|---|---|---|---|---|---|")
    for judged in verdict.failing[:_LISTED]:
        f = judged.finding
        what = f.where if f.kind in ("secret", "misconfiguration") else f.package
        title = f.title + (f" — `{f.match}`" if f.kind == "secret" and f.match else "")
        md.append(
            f"| {f.severity} | {_cell(f.id)} | {_cell(what)} | {_cell(f.installed)} | "
            f"{_cell(f.fixed or ('no fix yet' if f.kind == 'vulnerability' else ''))} | "
            f"{_cell(f.target)} | {_cell(title)} |"
        )
    if len(verdict.failing) > _LISTED:
        md.append(f"\n… and {len(verdict.failing) - _LISTED} more in `scan/findings.json`.")
    return md


def _markdown_ignores(verdict: Verdict) -> list[str]:
    suppressed = verdict.suppressed
    md = ["", f"**Suppressions** ({len(suppressed)} finding{'s' * (len(suppressed) != 1)}):"]
    if suppressed:
        md += [
            "",
            "| id | package / file | reason | expires | owner | entry |",
            "|---|---|---|---|---|---|",
        ]
        for f, e in [(j.finding, j.entry) for j in suppressed[:_LISTED]]:
            if e is None:
                continue
            md.append(
                f"| {_cell(f.id)} | {_cell(f.package or f.where)} | {_cell(e.reason)} | "
                f"{e.expires.isoformat()} | {_cell(e.owner or '')} | `{e.where}` |"
            )
    else:
        md.append("none.")
    if verdict.expired:
        md += [
            "",
            (
                f"**Expired ignore entries** ({len(verdict.expired)}) — they no longer "
                "suppress anything:"
            ),
            "",
        ]
        for index, entry in enumerate(verdict.expired):
            hits = verdict.expired_hits.get(index, 0)
            md.append(
                f"- `{_entry_label(entry)}` expired {entry.expires.isoformat()} "
                f"({entry.where}; reason: {entry.reason}); matches {hits} finding"
                f"{'s' * (hits != 1)} now"
            )
    if verdict.unused:
        md += [
            "",
            "Unused ignore entries (match no finding): "
            + ", ".join(f"`{_entry_label(e)}` ({e.where})" for e in verdict.unused),
        ]
    return md


def _markdown(
    verdict: Verdict,
    *,
    parts: list[Part],
    policy: Policy,
    ignore_file: str,
    header: str,
    db_line: str,
    sarif_note: str | None,
) -> str:
    failed = not verdict.passed
    md = [f"### {'❌' if failed else '✅'} scan: {header}", ""]
    md.append(
        f"Policy: findings at **{policy.severity}** or above fail"
        + ("; vulnerabilities without a fix are not gated" if policy.ignore_unfixed else "")
        + f"; model-file findings always fail; suppressions from `{ignore_file}`."
    )
    if db_line:
        md.append(f"{db_line}.")
    md += ["", *_markdown_table(verdict, parts)]
    md += _markdown_failing(verdict)
    md += _markdown_ignores(verdict)
    if sarif_note:
        md += ["", f"SARIF: {sarif_note}."]
    return "\n".join(md) + "\n"


@dataclass(frozen=True)
class _Plan:
    """What to scan and under which policy, read before anything slow runs."""

    root: Path
    repo: Path
    config_path: Path
    policy: Policy
    ignore_shown: str
    entries: list[IgnoreEntry]
    image: str | None
    image_reason: str
    models: list[Path]
    clair: list[tuple[Path, Part]]
    dockerfile: Path | None
    today: dt.date


@dataclass
class _Scanned:
    """The scan's parts and what they were scanned with."""

    parts: list[Part]
    tool: trivy.Trivy
    now: dt.datetime
    db: trivy.TrivyDb | None
    no_vuln_reason: str

    @property
    def findings(self) -> list[Finding]:
        return [f for part in self.parts for f in part.findings]


def _plan(ctx: Context, opts: ScanOptions) -> _Plan:
    cfg = ctx.config.scan
    today = dt.datetime.now(dt.UTC).date()
    root = ctx.loaded.root.resolve()
    repo = toplevel(root)
    ignore_path = ctx.loaded.resolve(cfg.ignore_file)
    ignore_shown = _shown(ignore_path, repo)
    entries = load_ignore_file(ignore_path, shown_as=ignore_shown)
    # Inputs first, so that a wrong argument is reported before anything slow runs.
    image, image_reason = _image(ctx, opts)
    models = _model_files(ctx, opts)
    reader = ClairReportScanner()
    return _Plan(
        root=root,
        repo=repo,
        config_path=ctx.loaded.path,
        policy=Policy(severity=cfg.severity, ignore_unfixed=cfg.ignore_unfixed),
        ignore_shown=ignore_shown,
        entries=entries,
        image=image,
        image_reason=image_reason,
        models=models,
        clair=[(p, reader.scan(p)) for p in opts.clair_reports],
        dockerfile=_dockerfile(ctx, opts, repo),
        today=today,
    )


def _database(ctx: Context, tool: trivy.Trivy) -> tuple[trivy.TrivyDb | None, str]:
    """Trivy's vulnerability database and, when there is none (and it is optional), why."""
    ctx.progress("Trivy database")
    try:
        return trivy.ensure_db(tool, _cache_dir(ctx)), ""
    except EnvironmentMissing as exc:
        if ctx.config.scan.vulnerability_db == "required":
            raise
        return None, (
            "vulnerabilities NOT scanned: no Trivy database "
            f"(scan.vulnerability-db is optional): {exc.message}"
        )


def _collect(ctx: Context, plan: _Plan) -> _Scanned:
    """Every part of the scan, in the order of the summary's table."""
    tool = trivy.locate()
    now = trivy.now_utc()
    db, no_vuln_reason = _database(ctx, tool) if plan.image else (None, "")
    repo = plan.repo
    parts: list[Part] = []
    if plan.image:
        parts.append(ImageScanner(tool, db, ctx.progress, reason=no_vuln_reason).scan(plan.image))
    else:
        parts.append(Part("image", "image", scanned=False, reason=plan.image_reason))
    if plan.dockerfile is not None:
        target = (plan.dockerfile, _shown(plan.dockerfile, repo))
        parts.append(DockerfileScanner(tool, ctx.progress).scan(target))
    else:
        where = _shown(plan.root, repo) or "."
        reason = f"skipped: no Dockerfile in {where} or the repository root"
        parts.append(Part("dockerfile", "Dockerfile", scanned=False, reason=reason))
    secrets = SecretScanner(tool, ctx.progress, skip_dirs=ctx.exclusions.trivy_skip_dirs())
    parts.append(secrets.scan(repo))
    models = ModelScanner(ctx.progress, trusted=lambda path: _project_trust(ctx, path))
    parts += [models.scan((path, _shown(path, repo))) for path in plan.models]
    if not plan.models:
        reason = f"skipped: no model file in {ctx.out} and no --model given"
        parts.append(Part("model", "model files", scanned=False, reason=reason))
    parts += [part for _, part in plan.clair]
    return _Scanned(parts, tool=tool, now=now, db=db, no_vuln_reason=no_vuln_reason)


def _sarif(plan: _Plan, scanned: _Scanned, verdict: Verdict) -> SarifOutcome:
    repo = plan.repo
    tools = {
        trivy.SOURCE: ToolInfo("Trivy", scanned.tool.version, "https://trivy.dev/"),
        modelscan.SOURCE: ToolInfo("mlcd model scanner", _mlcd_version(), "https://github.com/"),
    }
    if plan.clair:
        tools[clair.SOURCE] = ToolInfo("Clair", "report", "https://github.com/quay/clair")
    image_label = f"image {plan.image}" if plan.image else "image"
    fallback = {"": "mlcd.yaml"}
    # an image's findings point at the Dockerfile that made it (else at mlcd.yaml)
    fallback[image_label] = _shown(plan.dockerfile or plan.config_path, repo)
    for path, part in plan.clair:
        fallback[part.label] = _shown(path, repo)
    return build_sarif(verdict, tools, root_uri=repo.as_uri() + "/", fallback_uri=fallback)


def _policy_json(plan: _Plan) -> dict[str, Any]:
    return {
        "severity": plan.policy.severity,
        "ignore_unfixed": plan.policy.ignore_unfixed,
        "ignore_file": plan.ignore_shown,
    }


def _findings_json(plan: _Plan, verdict: Verdict) -> dict[str, Any]:
    return {
        "policy": _policy_json(plan),
        "findings": [
            {
                **j.finding.to_json(),
                "gate": j.decision,
                "suppressed_by": j.entry.to_json() if j.entry else None,
            }
            for j in verdict.judged
        ],
        "expired_ignores": [e.to_json() for e in verdict.expired],
        "unused_ignores": [e.to_json() for e in verdict.unused],
    }


def _summary(scanned: _Scanned, verdict: Verdict) -> str:
    counts = Counter(j.finding.severity for j in verdict.failing)
    words = {
        "image": "image",
        "dockerfile": "Dockerfile",
        "repository": "repository",
        "clair": "Clair report",
    }
    parts = scanned.parts
    names = [words.get(p.name, p.name) for p in parts if p.scanned]
    n_models = sum(p.name == "model" and p.scanned for p in parts)
    what = ", ".join(dict.fromkeys(s for s in names if s != "model"))
    if n_models:
        what += f", {n_models} model file{'s' * (n_models != 1)}"
    if verdict.failing:
        header = (
            f"{len(verdict.failing)} "
            + ("finding fails" if len(verdict.failing) == 1 else "findings fail")
            + " the gate ("
            + ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts.get(s))
            + ")"
        )
    else:
        header = f"no finding fails the gate ({len(scanned.findings)} found)"
    extras = []
    if verdict.suppressed:
        extras.append(f"{len(verdict.suppressed)} suppressed")
    if verdict.expired:
        plural = "ies" if len(verdict.expired) != 1 else "y"
        extras.append(f"{len(verdict.expired)} ignore entr{plural} expired")
    summary = f"{header}; " + (", ".join(extras) + "; " if extras else "") + f"scanned {what}"
    if scanned.no_vuln_reason:
        summary += "; WARNING: image vulnerabilities not scanned (no Trivy database)"
    return summary


def _reasons(scanned: _Scanned, verdict: Verdict, sarif_note: str | None) -> list[str]:
    reasons = [j.finding.one_line() for j in verdict.failing]
    reasons += [
        f"ignore entry {_entry_label(e)} ({e.where}) expired on {e.expires.isoformat()}: "
        "it no longer suppresses"
        for e in verdict.expired
    ]
    reasons += [
        f"suppressed {j.finding.id} {j.finding.package or j.finding.where}: "
        f"{j.entry.reason} (until {j.entry.expires.isoformat()}, {j.entry.where})"
        for j in verdict.suppressed
        if j.entry is not None
    ]
    parts = scanned.parts
    reasons += [f"{p.label}: {p.reason}" for p in parts if not p.scanned]
    reasons += [f"warning: {p.label}: {p.reason}" for p in parts if p.scanned and p.reason]
    db = scanned.db
    if db is not None and db.stale(scanned.now):
        reasons.append(f"warning: the Trivy DB is past its next update: {db.describe(scanned.now)}")
    if sarif_note:
        reasons.append(f"SARIF: {sarif_note}")
    return reasons


def _metrics(scanned: _Scanned, verdict: Verdict, sarif: SarifOutcome) -> dict[str, Any]:
    findings = scanned.findings
    by_severity = Counter(f.severity for f in findings)
    return {
        "findings": len(findings),
        "failing": len(verdict.failing),
        "suppressed": len(verdict.suppressed),
        "expired_ignores": len(verdict.expired),
        "unfixed": sum(j.decision == "unfixed" for j in verdict.judged),
        "below_threshold": sum(j.decision == "below" for j in verdict.judged),
        **{f"severity_{s.lower()}": by_severity.get(s, 0) for s in SEVERITIES},
        "sarif_results": sarif.results,
        "sarif_dropped": sarif.dropped,
        "image_packages": sum(p.packages for p in scanned.parts),
    }


def _write(ctx: Context, plan: _Plan, scanned: _Scanned, verdict: Verdict) -> StageOutcome:
    """The scan's files (SBOM, SARIF, findings.json) and its record."""
    folder = ctx.bundle.stage_dir(STAGE)
    artifacts: dict[str, str] = {}
    image = next((p for p in scanned.parts if p.name == "image" and p.scanned), None)
    if image is not None and image.sbom is not None:
        sbom_path = folder / "sbom.cdx.json"
        write_json_atomic(sbom_path, image.sbom)
        artifacts["sbom"] = ctx.bundle.relative(sbom_path)
    sarif = _sarif(plan, scanned, verdict)
    sarif_path = folder / "scan.sarif"
    write_json_atomic(sarif_path, sarif.log)
    artifacts["sarif"] = ctx.bundle.relative(sarif_path)
    findings_path = folder / "findings.json"
    write_json_atomic(findings_path, _findings_json(plan, verdict))
    artifacts["findings"] = ctx.bundle.relative(findings_path)
    db, now = scanned.db, scanned.now
    summary = _summary(scanned, verdict)
    markdown = _markdown(
        verdict,
        parts=scanned.parts,
        policy=plan.policy,
        ignore_file=plan.ignore_shown,
        header=summary,
        db_line=db.describe(now) if db is not None else "",
        sarif_note=sarif.note,
    )
    return StageOutcome(
        status="fail" if verdict.failing else "pass",
        summary=summary,
        reasons=_reasons(scanned, verdict, sarif.note),
        metrics=_metrics(scanned, verdict, sarif),
        artifacts=artifacts,
        details={
            "image": plan.image,
            "image_os": image.image_os if image is not None else "",
            "trivy_version": scanned.tool.version,
            "db": db.to_json(now) if db is not None else None,
            "parts": [p.to_json() for p in scanned.parts],
            "policy": _policy_json(plan),
            "ignores": {
                "entries": len(plan.entries),
                "expired": [e.to_json() for e in verdict.expired],
                "unused": [e.to_json() for e in verdict.unused],
            },
            "sarif": {
                "results": sarif.results,
                "dropped": sarif.dropped,
                "gzip_bytes": sarif.gzip_bytes,
                "note": sarif.note,
            },
        },
        markdown=markdown,
    )


def _body(ctx: Context, opts: ScanOptions) -> StageOutcome:
    """Collect (the plan, then every scanner's part), decide (one policy), write."""
    plan = _plan(ctx, opts)
    scanned = _collect(ctx, plan)
    verdict = judge(scanned.findings, plan.policy, plan.entries, today=plan.today)
    return _write(ctx, plan, scanned, verdict)


def _mlcd_version() -> str:
    from mlcd import __version__

    return __version__


def stage(ctx: Context, options: ScanOptions | None = None) -> StageResult:
    opts = options or ScanOptions()
    return ctx.run_stage(STAGE, lambda: _body(ctx, opts))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        metavar="REF",
        # not MLCD_IMAGE: that is the image *name* builds use (the workflow sets it for every
        # job), not a reference to scan; the build's record names the image it made
        default=None,
        help="the image to scan, from the local Docker engine (default: the one `mlcd build` "
        "recorded in the run folder)",
    )
    parser.add_argument(
        "--no-image", action="store_true", help="do not scan an image even if one was built"
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        type=Path,
        action="append",
        default=[],
        help="also scan this model file (skops, pickle, joblib, torch zip); repeatable",
    )
    parser.add_argument(
        "--clair-report",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="also judge this Clair JSON vulnerability report under the same policy; repeatable",
    )
    parser.add_argument(
        "--dockerfile",
        metavar="PATH",
        type=Path,
        default=None,
        help="the Dockerfile to check (default: the build's, else ./Dockerfile)",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    options = ScanOptions(
        image=args.image,
        models=tuple(args.model),
        clair_reports=tuple(args.clair_report),
        dockerfile=args.dockerfile,
        skip_image=args.no_image,
    )
    return ctx.conclude(stage(ctx, options))


COMMAND = Command(
    name="scan",
    help="Trivy (image, Dockerfile, secrets) and the model-file scanner, under one policy",
    description="Scan the image (vulnerabilities, secrets, misconfigurations; default: the "
    "one `mlcd build` made), the Dockerfile, the repository's files (secrets), every model "
    "file in the run and any --model, and Clair reports, all judged by scan.severity, "
    "scan.ignore-unfixed and the ignore file. Writes scan/summary.md, scan/scan.sarif "
    "(merged SARIF 2.1.0), scan/findings.json and scan/sbom.cdx.json.",
    example="mlcd scan --config model/mlcd.yaml\n"
    "mlcd scan --image 127.0.0.1:5000/breast-cancer@sha256:… --model model.joblib\n"
    "MLCD_TRIVY_CACHE=~/trivy-cache mlcd scan --clair-report clair.json",
    add_arguments=_arguments,
    run=_run,
)

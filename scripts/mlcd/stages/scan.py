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
import time
from collections import Counter
from dataclasses import dataclass, field
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
from mlcd.security.sarif_report import ToolInfo, build_sarif
from mlcd.tools import trivy
from mlcd.tools.git import toplevel

STAGE = "scan"
_BUNDLE_MODEL_SUFFIXES = (".skops", ".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt")
_SKIP_GLOBS = (
    "**/.git",
    "**/.venv",
    "**/venv",
    "**/node_modules",
    "**/__pycache__",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/.pytest_cache",
    "**/.tox",
    "**/.mlcd-kit",  # mlcd itself, checked out by the workflows beside the project (docs/github.md)
)
_LISTED = 25


@dataclass(frozen=True)
class ScanOptions:
    """What the command line adds to the config."""

    image: str | None = None
    models: tuple[Path, ...] = ()
    clair_reports: tuple[Path, ...] = ()
    dockerfile: Path | None = None
    skip_image: bool = False


@dataclass
class Part:
    """One target of the scan: scanned (with its findings) or skipped (with the reason)."""

    name: str
    label: str
    scanned: bool
    reason: str = ""
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.label,
            "scanned": self.scanned,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "findings": len(self.findings),
        }


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
    md += ["", "| target | " + " | ".join(reversed(SEVERITIES)) + " | failing | status |"]
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
    if verdict.failing:
        md += ["", f"**Failing findings** ({len(verdict.failing)}):", ""]
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
    suppressed = verdict.suppressed
    md += ["", f"**Suppressions** ({len(suppressed)} finding{'s' * (len(suppressed) != 1)}):"]
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
    if sarif_note:
        md += ["", f"SARIF: {sarif_note}."]
    return "\n".join(md) + "\n"


def _body(ctx: Context, opts: ScanOptions) -> StageOutcome:
    cfg = ctx.config.scan
    root = ctx.loaded.root.resolve()
    repo = toplevel(root)
    policy = Policy(severity=cfg.severity, ignore_unfixed=cfg.ignore_unfixed)
    ignore_path = ctx.loaded.resolve(cfg.ignore_file)
    ignore_shown = _shown(ignore_path, repo)
    entries = load_ignore_file(ignore_path, shown_as=ignore_shown)
    today = dt.datetime.now(dt.UTC).date()

    # Inputs first, so that a wrong argument is reported before anything slow runs.
    image, image_reason = _image(ctx, opts)
    models = _model_files(ctx, opts)
    clair_findings = [(p, clair.parse_clair(p)) for p in opts.clair_reports]
    dockerfile = _dockerfile(ctx, opts, repo)

    tool = trivy.locate()
    now = trivy.now_utc()
    db = None
    no_vuln_reason = ""
    if image:
        ctx.progress("Trivy database")
        try:
            db = trivy.ensure_db(tool, _cache_dir(ctx))
        except EnvironmentMissing as exc:
            if ctx.config.scan.vulnerability_db == "required":
                raise
            no_vuln_reason = (
                "vulnerabilities NOT scanned: no Trivy database "
                f"(scan.vulnerability-db is optional): {exc.message}"
            )

    folder = ctx.bundle.stage_dir(STAGE)
    parts: list[Part] = []
    artifacts: dict[str, str] = {}
    image_os = ""
    packages = 0

    label = f"image {image}" if image else "image"
    if image:
        ctx.progress(f"trivy image {image}")
        clock = time.monotonic()
        result = trivy.scan_image(tool, image, db, label=label)
        parts.append(
            Part(
                "image",
                label,
                scanned=True,
                reason=no_vuln_reason,
                seconds=time.monotonic() - clock,
                findings=result.findings,
            )
        )
        image_os, packages = result.os, result.packages
        if result.sbom is not None:
            sbom_path = folder / "sbom.cdx.json"
            write_json_atomic(sbom_path, result.sbom)
            artifacts["sbom"] = ctx.bundle.relative(sbom_path)
    else:
        parts.append(Part("image", label, scanned=False, reason=image_reason))

    if dockerfile is not None:
        shown = _shown(dockerfile, repo)
        ctx.progress(f"trivy config {shown}")
        clock = time.monotonic()
        df_label = shown if shown.endswith("Dockerfile") else f"Dockerfile {shown}"
        found = trivy.scan_config(tool, dockerfile, shown=shown, label=df_label)
        parts.append(
            Part(
                "dockerfile",
                df_label,
                scanned=True,
                seconds=time.monotonic() - clock,
                findings=found,
            )
        )
    else:
        parts.append(
            Part(
                "dockerfile",
                "Dockerfile",
                scanned=False,
                reason=f"skipped: no Dockerfile in {_shown(root, repo) or '.'} "
                "or the repository root",
            )
        )

    ctx.progress("trivy secrets in the repository")
    clock = time.monotonic()
    skip = [ctx.out.resolve(), ctx.loaded.resolve(ctx.config.registry.path)]
    secrets = trivy.scan_secrets(
        tool, repo, skip_dirs=[*skip, *map(Path, _SKIP_GLOBS)], label="repository"
    )
    parts.append(
        Part(
            "repository",
            "repository (secrets)",
            scanned=True,
            seconds=time.monotonic() - clock,
            findings=secrets,
        )
    )

    for path in models:
        shown = _shown(path, repo)
        ctx.progress(f"model file {shown}")
        clock = time.monotonic()
        found = modelscan.scan_model_file(path, shown=shown, trusted=_project_trust(ctx, path))
        parts.append(
            Part(
                "model",
                f"model {shown}",
                scanned=True,
                seconds=time.monotonic() - clock,
                findings=found,
            )
        )
    if not models:
        parts.append(
            Part(
                "model",
                "model files",
                scanned=False,
                reason=f"skipped: no model file in {ctx.out} and no --model given",
            )
        )
    for report_path, found in clair_findings:
        parts.append(
            Part("clair", f"clair report {report_path.name}", scanned=True, findings=found)
        )

    findings = [f for part in parts for f in part.findings]
    verdict = judge(findings, policy, entries, today=today)

    # outputs: SARIF, findings.json, summary
    tools = {
        trivy.SOURCE: ToolInfo("Trivy", tool.version, "https://trivy.dev/"),
        modelscan.SOURCE: ToolInfo("mlcd model scanner", _mlcd_version(), "https://github.com/"),
    }
    if clair_findings:
        tools[clair.SOURCE] = ToolInfo("Clair", "report", "https://github.com/quay/clair")
    fallback = {"": "mlcd.yaml"}
    if dockerfile is not None:
        fallback[label] = _shown(dockerfile, repo)
    else:
        fallback[label] = _shown(ctx.loaded.path, repo)
    for report_path, _ in clair_findings:
        fallback[f"clair report {report_path.name}"] = _shown(report_path, repo)
    sarif = build_sarif(verdict, tools, root_uri=repo.as_uri() + "/", fallback_uri=fallback)
    sarif_path = folder / "scan.sarif"
    write_json_atomic(sarif_path, sarif.log)
    artifacts["sarif"] = ctx.bundle.relative(sarif_path)
    findings_path = folder / "findings.json"
    write_json_atomic(
        findings_path,
        {
            "policy": {
                "severity": policy.severity,
                "ignore_unfixed": policy.ignore_unfixed,
                "ignore_file": ignore_shown,
            },
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
        },
    )
    artifacts["findings"] = ctx.bundle.relative(findings_path)

    counts = Counter(j.finding.severity for j in verdict.failing)
    words = {
        "image": "image",
        "dockerfile": "Dockerfile",
        "repository": "repository",
        "clair": "Clair report",
    }
    scanned = [words.get(p.name, p.name) for p in parts if p.scanned]
    n_models = sum(p.name == "model" and p.scanned for p in parts)
    what = ", ".join(dict.fromkeys(s for s in scanned if s != "model"))
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
        header = f"no finding fails the gate ({len(findings)} found)"
    extras = []
    if verdict.suppressed:
        extras.append(f"{len(verdict.suppressed)} suppressed")
    if verdict.expired:
        plural = "ies" if len(verdict.expired) != 1 else "y"
        extras.append(f"{len(verdict.expired)} ignore entr{plural} expired")
    summary = f"{header}; " + (", ".join(extras) + "; " if extras else "") + f"scanned {what}"

    db_line = db.describe(now) if db is not None else ""
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
    reasons += [f"{p.label}: {p.reason}" for p in parts if not p.scanned]
    reasons += [f"warning: {p.label}: {p.reason}" for p in parts if p.scanned and p.reason]
    if no_vuln_reason:
        summary += "; WARNING: image vulnerabilities not scanned (no Trivy database)"
    if db is not None and db.stale(now):
        reasons.append(f"warning: the Trivy DB is past its next update: {db_line}")
    if sarif.note:
        reasons.append(f"SARIF: {sarif.note}")

    markdown = _markdown(
        verdict,
        parts=parts,
        policy=policy,
        ignore_file=ignore_shown,
        header=summary,
        db_line=db_line,
        sarif_note=sarif.note,
    )
    by_severity = Counter(f.severity for f in findings)
    return StageOutcome(
        status="fail" if verdict.failing else "pass",
        summary=summary,
        reasons=reasons,
        metrics={
            "findings": len(findings),
            "failing": len(verdict.failing),
            "suppressed": len(verdict.suppressed),
            "expired_ignores": len(verdict.expired),
            "unfixed": sum(j.decision == "unfixed" for j in verdict.judged),
            "below_threshold": sum(j.decision == "below" for j in verdict.judged),
            **{f"severity_{s.lower()}": by_severity.get(s, 0) for s in SEVERITIES},
            "sarif_results": sarif.results,
            "sarif_dropped": sarif.dropped,
            "image_packages": packages,
        },
        artifacts=artifacts,
        details={
            "image": image,
            "image_os": image_os,
            "trivy_version": tool.version,
            "db": db.to_json(now) if db is not None else None,
            "parts": [p.to_json() for p in parts],
            "policy": {
                "severity": policy.severity,
                "ignore_unfixed": policy.ignore_unfixed,
                "ignore_file": ignore_shown,
            },
            "ignores": {
                "entries": len(entries),
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

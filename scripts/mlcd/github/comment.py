"""The pull-request comment: verdict table, metric chart, scan counts, image, artifact links.

Rendered from the evidence bundle alone (docs/foundation.md), so it reads whatever the
stages wrote and leaves out what is not there. One comment per pull request, found again by
its hidden marker and updated in place. The marker carries the project, so two projects of
one repository (`churn` and `churn-v2`) keep a comment each.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.contracts import details, model_for
from mlcd.evidence import Bundle, StageResult, status_icon
from mlcd.presentation import md_cell as _cell
from mlcd.presentation import md_number as _fmt
from mlcd.presentation import number as _number

MARKER = "<!-- mlcd-report -->"  # a comment rendered without a project (mlcd report)
MAX_BODY = 60000  # GitHub refuses comments over 65536 characters
STAGE_ORDER = ("lint", "test", "train", "evaluate", "build", "scan", "release", "deploy")


@dataclass(frozen=True)
class RunInfo:
    """Where the run happened, for links (from the GitHub Actions environment)."""

    server_url: str = "https://github.com"
    repository: str = ""
    run_id: str = ""
    sha: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunInfo:
        return cls(
            server_url=env.get("GITHUB_SERVER_URL", "https://github.com"),
            repository=env.get("GITHUB_REPOSITORY", ""),
            run_id=env.get("GITHUB_RUN_ID", ""),
            sha=env.get("GITHUB_SHA", ""),
            artifacts=parse_artifacts(env.get("MLCD_ARTIFACTS", "")),
        )

    @property
    def run_url(self) -> str:
        if not (self.repository and self.run_id):
            return ""
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


def parse_artifacts(text: str) -> dict[str, str]:
    """`name=url` pairs, one a line (empty values, as from skipped jobs, are dropped)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, url = line.strip().partition("=")
        if sep and name.strip() and url.strip():
            found[name.strip()] = url.strip()
    return found


def marker(project: str) -> str:
    """The hidden marker of one project's comment; no project's marker is a prefix of
    another's (the name is closed by ` -->`)."""
    return f"<!-- mlcd-report project={project} -->" if project else MARKER


def _ordered(results: list[StageResult]) -> list[StageResult]:
    rank = {name: index for index, name in enumerate(STAGE_ORDER)}
    return sorted(results, key=lambda r: (rank.get(r.stage, len(rank)), r.started))


def headline(results: list[StageResult]) -> str:
    failed = [r for r in _ordered(results) if r.status in ("fail", "error")]
    if failed:
        first = failed[0]
        word = "blocked" if first.status == "fail" else "stopped"
        return f"❌ {word} at **{first.stage}**: {_cell(first.summary)}"
    if any(r.stage == "deploy" and r.status == "pass" for r in results):
        return "🚀 released and deployed"
    if any(r.stage == "release" and r.status == "pass" for r in results):
        return "📦 released"
    if results:
        return "✅ every check passed"
    return "⏳ no stage has reported yet"


def _verdict(bundle: Bundle) -> list[dict[str, Any]]:
    path = bundle.root / "evaluate" / "verdict.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    checks = data.get("checks") if isinstance(data, dict) else None
    return [c for c in checks or [] if isinstance(c, dict)]


def _lower_bound(check: Mapping[str, Any]) -> float | None:
    """A check's lower bound: a number with kind `min`, or a bound written `≥ x` / `>= x`."""
    bound = check.get("bound")
    if check.get("kind") == "min":
        return _number(bound)
    match = re.match(r"^\s*(?:≥|>=)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$", str(bound or ""))
    return float(match.group(1)) if match else None


def verdict_table(checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = ["| check | metric | value | bound | |", "|---|---|---:|---:|---|"]
    for check in checks:
        passed = check.get("passed")
        icon = "✅" if passed is True else "❌" if passed is False else "•"
        lines.append(
            f"| {_cell(check.get('kind', ''))} | {_cell(check.get('metric') or '—')} | "
            f"{_fmt(check.get('value', ''))} | {_fmt(check.get('bound', ''))} | {icon} |"
        )
    return lines


def metric_chart(metrics: Mapping[str, Any], checks: list[dict[str, Any]]) -> list[str]:
    """A Mermaid bar chart of the held-out metrics, with their lower bounds as a line."""
    names = [k for k, v in metrics.items() if _number(v) is not None][:12]
    if not names:
        return []
    values = [float(metrics[k]) for k in names]
    bounds: dict[str, float] = {}
    for check in checks:
        bound = _lower_bound(check)
        if bound is not None and check.get("metric"):
            bounds.setdefault(str(check.get("metric")), bound)
    low = min([0.0, *values, *bounds.values()])
    high = max([1.0, *values, *bounds.values()])
    lines = [
        "```mermaid",
        "xychart-beta",
        '    title "Held-out metrics (bars) and lower bounds (line)"',
        "    x-axis [" + ", ".join(f'"{n}"' for n in names) + "]",
        f'    y-axis "value" {low:.4g} --> {high:.4g}',
        "    bar [" + ", ".join(f"{v:.4f}" for v in values) + "]",
    ]
    if bounds:
        line = [bounds.get(n, float("nan")) for n in names]
        if all(math.isfinite(v) for v in line):
            lines.append("    line [" + ", ".join(f"{v:.4f}" for v in line) + "]")
    lines.append("```")
    return lines


def _scan_lines(scan: StageResult) -> list[str]:
    counts = {k: v for k, v in scan.metrics.items() if _number(v) is not None}
    if not counts:
        return [f"{status_icon(scan.status)} {_cell(scan.summary)}"]
    header = "| " + " | ".join(_cell(k) for k in counts) + " |"
    rule = "|" + "---:|" * len(counts)
    row = "| " + " | ".join(_fmt(v) for v in counts.values()) + " |"
    return [f"{status_icon(scan.status)} {_cell(scan.summary)}", "", header, rule, row]


def _image_lines(build: StageResult | None, release: StageResult | None) -> list[str]:
    lines = []
    for result in (build, release):
        if result is None:
            continue
        given = details(result, model_for(result.stage))
        image = given.first("image") or given.first("reference")
        if image:
            lines.append(f"- {result.stage}: `{_cell(image)}`")
        size = given.first("size_bytes", "size", "image_size")
        if _number(size) is not None and result.stage == "build":
            lines.append(f"- size: {float(size) / 1e6:.1f} MB")
        version = given.first("version")
        if version and result.stage == "release":
            lines.append(f"- version: **{_cell(version)}**")
    return lines


def tracking_links(results: list[StageResult]) -> list[tuple[str, str]]:
    """(stage, run page) of the stages logged to an MLflow tracking server."""
    from mlcd.contracts import EvaluateDetails, TrainDetails

    out = []
    for result in results:
        if result.stage == "train":
            tracked = details(result, TrainDetails).tracking
        elif result.stage == "evaluate":
            tracked = details(result, EvaluateDetails).tracking
        else:
            continue
        if tracked is not None and tracked.url and tracked.url.startswith(("http://", "https://")):
            out.append((result.stage, tracked.url))
    return out


def render(bundle: Bundle, run: RunInfo, *, title: str = "mlcd", project: str = "") -> str:
    """The whole comment (its marker and heading name `project` when given)."""
    results = _ordered(bundle.stages())
    by_stage = {r.stage: r for r in results}
    heading = f"{title} · {project}" if project else title
    out = [marker(project), f"## {heading}: {headline(results)}", ""]
    if results:
        out += ["| stage | outcome | time | summary |", "|---|---|---:|---|"]
        out += [
            f"| {r.stage} | {status_icon(r.status)} {r.status} | {r.duration_s:.1f}s | "
            f"{_cell(r.summary)} |"
            for r in results
        ]
    evaluate = by_stage.get("evaluate")
    checks = _verdict(bundle)
    if evaluate is not None:
        out += ["", "### Evaluation", ""]
        out += verdict_table(checks) or [f"{status_icon(evaluate.status)} {evaluate.summary}"]
        chart = metric_chart(evaluate.metrics, checks)
        if chart:
            out += ["", *chart]
    scan = by_stage.get("scan")
    if scan is not None:
        out += ["", "### Scan", "", *_scan_lines(scan)]
    image = _image_lines(by_stage.get("build"), by_stage.get("release"))
    if image:
        out += ["", "### Image", "", *image]
    links = []
    if run.run_url:
        links.append(f"- [workflow run]({run.run_url})")
    links += [f"- [{_cell(name)}]({url})" for name, url in sorted(run.artifacts.items())]
    links += [f"- [MLflow run: {stage}]({url})" for stage, url in tracking_links(results)]
    if links:
        out += ["", "### Artifacts", "", *links]
    details = []
    for r in results:
        body = bundle.summary_markdown(r.stage).strip()
        if body:
            details += ["", body]
    if details:
        out += ["", "<details><summary>Stage details</summary>", *details, "", "</details>"]
    footer = f"<sub>mlcd · commit {run.sha[:12]}</sub>" if run.sha else "<sub>mlcd</sub>"
    out += ["", footer]
    text = "\n".join(out) + "\n"
    if len(text) > MAX_BODY:
        cut = text[: MAX_BODY - 200]
        text = cut + "\n\n… (cut to fit a GitHub comment; the full report is in the artifacts)\n"
        if "<details>" in cut and "</details>" not in cut:
            text += "\n</details>\n"
    return text


def pull_request_number(event_path: str | None) -> int | None:
    """The PR number from the event payload GitHub Actions writes (None outside a PR)."""
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    pr = event.get("pull_request")
    number = pr.get("number") if isinstance(pr, dict) else None
    if number is None:
        number = event.get("number") if isinstance(pr, dict) else None
    return int(number) if isinstance(number, int) and not isinstance(number, bool) else None

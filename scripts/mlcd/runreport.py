"""`<out>/report.html`: one self-contained page for a whole run.

Everything on the page comes from the evidence bundle (docs/report.md): `run.json`,
each stage's `result.json`, and the files stages name there (`evaluate/verdict.json` and its
PNG plots, `scan/findings.json`, `scan/sbom.cdx.json`, `train/model.json`). The page has
inline CSS, inline SVG charts drawn here and the evaluation's PNGs as data URIs: no script,
no external address, so it can be mailed, attached to a CI run or opened offline.

A stage that did not run is shown as "not run"; every section renders from whatever subset
of the bundle is there, and a malformed file is reported on the page, never raised.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd import __version__, pages, stagenames
from mlcd.charts import (
    LIMIT,
    SEVERITY_COLOUR,
    WEIGHT,
    Interval,
    metric_chart,
    severity_bar,
    timeline_chart,
)
from mlcd.contracts import (
    BuildDetails,
    D,
    DeployDetails,
    EvaluateDetails,
    ReleaseDetails,
    ScanDetails,
    details,
    model_for,
    parse,
)
from mlcd.errors import MlcdError
from mlcd.evidence import Bundle, StageResult
from mlcd.modelmeta import ModelMeta
from mlcd.pages import html as html_
from mlcd.presentation import METRICS, SEVERITIES, STATUS_WORD, metric_name
from mlcd.presentation import html_number as _fmt
from mlcd.presentation import number as _num
from mlcd.progress import fmt_seconds

# the charts are drawn in mlcd.charts; these names are read from here too
__all__ = [
    "LIMIT",
    "REPORT_FILE",
    "SEVERITY_COLOUR",
    "WEIGHT",
    "Interval",
    "collect",
    "intervals",
    "metric_chart",
    "render_html",
    "sbom_components",
    "severity_bar",
    "timeline_chart",
    "verdict",
    "write_html",
]

REPORT_FILE = "report.html"
# The stages of a full run, in the workflow's order; deploy-<env> stages follow them.
PIPELINE = ("lint", "test", "train", "evaluate", "build", "scan", "release")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

e = html.escape


# ----------------------------------------------------------------------------- reading


def _json_file(path: Path) -> Any:
    """The JSON in a file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _model_meta(path: Path | None) -> ModelMeta | None:
    """train's model.json, or None when it is missing or not a valid one (the page shows
    what it can)."""
    if path is None:
        return None
    try:
        return ModelMeta.from_dict(_json_file(path), str(path))
    except MlcdError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _details(result: StageResult | None, model: type[D]) -> D:
    """A stage's details as its model; the model's defaults when the stage did not run."""
    return details(result, model) if result is not None else model()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class StageRow:
    """One line of the stage table: a result, a stage that did not run, or a broken file."""

    name: str
    status: str  # pass | fail | error | skipped | not run | unreadable
    duration_s: float | None = None
    summary: str = ""
    started: str = ""
    earlier: bool = False  # recorded by an earlier run than run.json's
    result: StageResult | None = None


@dataclass
class RunView:
    """What the page is drawn from."""

    root: Path
    run: dict[str, Any]
    rows: list[StageRow]
    results: dict[str, StageResult] = field(default_factory=dict)

    def result(self, stage: str) -> StageResult | None:
        return self.results.get(stage)

    def file(self, stage: str, key: str, default: str) -> Path | None:
        """A file a stage names in `artifacts` (or its usual place), inside the bundle only."""
        result = self.results.get(stage)
        rel = (result.artifacts.get(key) if result else None) or default
        path = (self.root / rel).resolve()
        root = self.root.resolve()
        if path != root and root not in path.parents:
            return None
        return path if path.is_file() else None


def _planned(bundle: Bundle, run: Mapping[str, Any], planned: Sequence[str] | None) -> list[str]:
    """The rows of the stage table: the planned stages (`mlcd run`'s steps for the config),
    every stage of the full pipeline in its place, and the environments the run or the
    folder names."""
    names = list(planned or ())
    for index, stage in enumerate(PIPELINE):
        if stage in names:
            continue
        before = [names.index(s) for s in PIPELINE[:index] if s in names]
        names.insert(max(before) + 1 if before else 0, stage)
    recorded = [str(_dict(r).get("stage", "")) for r in _list(run.get("stages"))]
    found = sorted(
        p.parent.name
        for p in bundle.root.glob(f"{stagenames.DEPLOY_GLOB}/result.json")
        if p.parent.is_dir()
    )
    for name in [*recorded, *found]:
        if stagenames.is_deploy(name) and name not in names:
            names.append(name)
    return names


def collect(bundle: Bundle, planned: Sequence[str] | None = None) -> RunView:
    """Read run.json and every stage result; a stage that cannot be read becomes a row."""
    run = _dict(_json_file(bundle.root / "run.json"))
    results: dict[str, StageResult] = {}
    broken: dict[str, str] = {}
    if bundle.root.is_dir():
        for child in sorted(bundle.root.iterdir()):
            if not (child / "result.json").is_file():
                continue
            try:
                found = bundle.read(child.name)
            except MlcdError as exc:
                broken[child.name] = exc.message
                continue
            if found is not None:
                results[child.name] = found
    run_started = str(run.get("started") or "")
    names = _planned(bundle, run, planned)
    others = sorted(
        (n for n in [*results, *broken] if n not in names),
        key=lambda n: (results[n].started if n in results else "", n),
    )
    rows: list[StageRow] = []
    for name in [*names, *others]:
        if name in broken:
            rows.append(StageRow(name, "unreadable", summary=broken[name]))
        elif name in results:
            r = results[name]
            rows.append(
                StageRow(
                    name,
                    r.status,
                    duration_s=r.duration_s,
                    summary=r.summary,
                    started=r.started,
                    earlier=bool(run_started) and r.started < run_started,
                    result=r,
                )
            )
        else:
            rows.append(StageRow(name, "not run"))
    return RunView(root=bundle.root, run=run, rows=rows, results=results)


# ----------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    status: str  # pass | fail | error | empty
    headline: str
    detail: str


def verdict(view: RunView) -> Verdict:
    """The run's outcome: run.json when `mlcd run` wrote it, else the stage results."""
    ran = [r for r in view.rows if r.result is not None or r.status == "unreadable"]
    if not ran:
        return Verdict("empty", "No results yet", f"no stage has written to {view.root} yet")
    failed = next((r for r in ran if r.status == "fail"), None)
    errored = next((r for r in ran if r.status in ("error", "unreadable")), None)
    status = str(view.run.get("status") or "")
    if status not in ("pass", "fail", "error"):
        status = "fail" if failed else "error" if errored else "pass"
    stopped = str(view.run.get("stopped_at") or "")
    passed = sum(r.status == "pass" for r in ran)
    counted = f"{passed} of {len(ran)} stages passed"
    if status == "pass":
        live = [
            stagenames.deploy_label(r.name)
            for r in ran
            if stagenames.is_deploy(r.name) and r.status == "pass"
        ]
        release = view.result("release")
        version = _details(release, ReleaseDetails).version
        if live and version:
            headline = f"Delivered: release {version} is live in {', '.join(live)}"
        elif version:
            headline = f"Passed: release {version} is ready to deploy"
        else:
            headline = "Passed: every gate said yes"
        missing = [r.name for r in view.rows if r.status == "not run"]
        if missing and not live:
            headline = "Passed so far: every stage that ran said yes"
            counted += "; not run: " + ", ".join(missing)
        return Verdict("pass", headline, counted)
    culprit = next((r for r in ran if r.name == stopped), None) or failed or errored
    where = f" at {culprit.name}" if culprit else ""
    why = culprit.summary if culprit else ""
    if status == "fail":
        return Verdict("fail", f"Stopped{where}: a gate said no", why or counted)
    return Verdict("error", f"Stopped{where}: something was missing", why or counted)


# ----------------------------------------------------------------------------- small HTML


# The page's parts are macros of data/templates/parts.html.j2; values the callers pass are
# HTML already where they are marked `html(...)`, escaped by the template otherwise.
def _parts() -> Any:
    return pages.macros("parts.html.j2")


def _model_parts() -> Any:
    return pages.macros("model.html.j2")


def _scan_parts() -> Any:
    return pages.macros("scan.html.j2")


def _cols(left: str, right: str) -> str:
    return str(_parts().cols(html_(left), html_(right)))


def _chart(svg: str) -> str:
    return str(_parts().chart(html_(svg)))


def _pill(status: str) -> str:
    return str(_parts().pill(status))


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    cells = [[html_(c) for c in row] for row in rows]
    return str(_parts().table(list(head), cells, css))


def _facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list: label, then value (values are HTML already)."""
    return str(_parts().facts([(k, html_(v)) for k, v in pairs]))


def _code(text: str) -> str:
    return str(_parts().code(text))


def _section(anchor: str, title: str, intro: str, body: str, *, status: str = "") -> str:
    return str(_parts().section(anchor, title, html_(intro), html_(body), status))


def _not_run(stage: str, what: str) -> str:
    return str(_parts().not_run(stage, what))


def _earlier(row: StageRow | None) -> str:
    if row is None or not row.earlier:
        return ""
    return str(_parts().earlier(row.started))


# ----------------------------------------------------------------------------- summary cards


def _cards(view: RunView) -> str:
    cards: list[tuple[str, str, str]] = []
    evaluate = view.result("evaluate")
    if evaluate is not None:
        model_version = _details(evaluate, EvaluateDetails).model_version
        metrics = evaluate.metrics
        key = next((k for k in ("roc_auc", "accuracy", "r2", "rmse") if k in metrics), "")
        value = f"{metric_name(key)} {_fmt(metrics.get(key))}" if key else evaluate.summary
        cards.append(("model", str(model_version or "candidate"), value))
    release = view.result("release")
    version = _details(release, ReleaseDetails).version
    if release is not None and version:
        cards.append(("release", version, STATUS_WORD.get(release.status, release.status)))
    size_mb = _details(view.result("build"), BuildDetails).size_mb
    if _num(size_mb) is not None:
        cards.append(("image", f"{size_mb} MB", "serving image"))
    scan = view.result("scan")
    if scan is not None:
        failing = int(_num(scan.metrics.get("failing")) or 0)
        cards.append(
            (
                "scan",
                f"{failing} failing",
                (
                    f"{int(_num(scan.metrics.get('findings')) or 0)} findings, "
                    f"{int(_num(scan.metrics.get('suppressed')) or 0)} suppressed"
                ),
            )
        )
    for row in view.rows:
        if stagenames.is_deploy(row.name) and row.result is not None:
            d = details(row.result, DeployDetails)
            cards.append(
                (
                    stagenames.deploy_label(row.name),
                    d.version or row.status,
                    d.outcome or row.status,
                )
            )
    return str(_parts().cards(cards))


# ----------------------------------------------------------------------------- stages


def _stages(view: RunView) -> str:
    rows = []
    for row in view.rows:
        when = fmt_seconds(row.duration_s) if row.duration_s is not None else ""
        note = ' <span class="tag">earlier run</span>' if row.earlier else ""
        link = (
            f'<a href="{e(row.name)}/summary.md">{e(row.name)}</a>' if row.result else e(row.name)
        )
        rows.append([link + note, _pill(row.status), when, e(row.summary)])
    return _table(["stage", "outcome", "time", "summary"], rows, css="stages")


# ----------------------------------------------------------------------------- model


def _thresholds(checks: Iterable[Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for check in checks:
        c = _dict(check)
        if c.get("kind") != "threshold" or c.get("slice") or not c.get("metric"):
            continue
        match = re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", str(c.get("bound", "")))
        if match:
            found[str(c["metric"])] = float(match.group(0))
    return found


def _plots(view: RunView, evaluate: StageResult) -> list[tuple[str, str, str]]:
    """The evaluation's PNG plots inside the bundle: (path, data URI, title) each."""
    figures = []
    for key, rel in sorted(evaluate.artifacts.items()):
        if not key.startswith("plot_"):
            continue
        path = view.file("evaluate", key, rel)
        if path is None or path.suffix.lower() != ".png":
            continue
        data = path.read_bytes()
        if not data.startswith(_PNG_MAGIC):
            continue
        title = key.removeprefix("plot_").replace("_", " ")
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        figures.append((rel, uri, title))
    return figures


def _metric_table(
    metrics: Mapping[str, Any],
    intervals: Mapping[str, Any],
    champion_metrics: Mapping[str, Any],
    comparison: Mapping[str, Any],
) -> str:
    """One row per metric: candidate with its interval, and against the champion the
    difference, whether it is inside the paired bootstrap's noise, and the gate."""
    compared = {
        str(_dict(r).get("metric")): _dict(r)
        for r in _list(comparison.get("rows"))
        if comparison.get("status") == "compared"
    }
    champion = str(comparison.get("champion") or "") if compared else ""
    rows = []
    for name in METRICS:
        if name not in metrics:
            continue
        pair = [_num(v) for v in _list(intervals.get(name))]
        interval = (
            f"[{pair[0]:.4f}, {pair[1]:.4f}]"
            if len(pair) == 2 and pair[0] is not None and pair[1] is not None
            else "n/a"
        )
        row = [e(metric_name(name)), f"<b>{_fmt(metrics[name])}</b>", interval]
        if champion:
            row.append(_fmt(champion_metrics.get(name)))
            found = compared.get(name)
            if found is None:
                row += ["", "", ""]
            else:
                diff = _num(found.get("difference"))
                iv = [_num(v) for v in _list(found.get("interval"))]
                noise = ""
                if len(iv) == 2 and iv[0] is not None and iv[1] is not None:
                    noise = "inside the noise" if iv[0] <= 0 <= iv[1] else "outside the noise"
                if not found.get("gated"):
                    gate = "reported, not gated"
                elif found.get("passed"):
                    gate = f"✓ worse by ≤ {found.get('max_regression')}"
                else:
                    gate = f'<span class="bad">✗ worse by {_fmt(found.get("worse_by"))}</span>'
                row += ["n/a" if diff is None else f"{diff:+.4f}", e(noise), gate]
        rows.append(row)
    if not rows:
        return ""
    head = ["metric", "candidate", "95% interval"]
    if champion:
        head += [f"champion {champion}", "difference", "paired bootstrap", "gate"]
    return _table(head, rows, css="num")


def _tracking_links(*results: StageResult | None) -> str:
    """Links to the train and evaluate runs on MLflow (empty when none was logged)."""
    from mlcd.github.comment import tracking_links

    found = tracking_links([r for r in results if r is not None])
    return " · ".join(f'<a href="{e(url)}">{e(stage)}</a>' for stage, url in found)


def _model(view: RunView) -> str:
    evaluate = view.result("evaluate")
    train = view.result("train")
    intro = (
        "The candidate model is scored on rows held out from training; each figure has a "
        "bootstrap interval. It must meet the thresholds of <code>mlcd.yaml</code> and must not "
        "be worse than the champion (the model live in production) by more than the allowed "
        "regression."
    )
    if evaluate is None:
        body = str(_model_parts().trained(train.summary)) if train is not None else ""
        return _section("model", "Model", intro, body + _not_run("evaluate", "evaluation"))
    verdict_path = view.file("evaluate", "verdict", "evaluate/verdict.json")
    data = _dict(_json_file(verdict_path)) if verdict_path else {}
    evaluated = details(evaluate, EvaluateDetails)
    comparison = _dict(data.get("comparison") or evaluated.comparison)
    intervals = _dict(data.get("intervals") or evaluated.intervals)
    metrics = {**evaluate.metrics, **_dict(data.get("metrics"))}
    champion_metrics = _dict(data.get("champion_metrics"))
    for r in _list(comparison.get("rows")):
        row = _dict(r)
        if row.get("metric") and row.get("champion") is not None:
            champion_metrics.setdefault(str(row["metric"]), row["champion"])
    champion = str(comparison.get("champion") or "")
    if comparison.get("status") != "compared":
        champion_metrics = {}
    checks = _list(data.get("checks"))
    meta = _model_meta(view.file("train", "metadata", "train/model.json"))
    facts = _facts(
        [
            ("model version", e(str(evaluated.model_version or ""))),
            (
                "estimator",
                e(f"{meta.estimator or ''} {meta.task}" if meta else " "),
            ),
            ("target", _code((meta.target or "") if meta else "")),
            (
                "held-out rows",
                _fmt(data.get("holdout_rows") or (train and train.metrics.get("holdout_rows"))),
            ),
            ("trained", e(train.summary) if train else ""),
            ("MLflow runs", _tracking_links(train, evaluate)),
        ]
    )
    model = _model_parts()
    left = [facts]
    if checks:
        left.append(
            str(
                model.checks(
                    [(_dict(c).get("passed"), str(_dict(c).get("line", ""))) for c in checks]
                )
            )
        )
    else:
        left.append(str(model.reasons(evaluate.reasons)))
    said = any(_dict(c).get("kind") == "champion" for c in checks)
    if comparison.get("status") != "compared" and comparison.get("reason") and not said:
        left.append(str(model.champion(str(comparison["reason"]))))
    chart = metric_chart(
        metrics,
        intervals,
        champion_metrics,
        _thresholds(checks),
        champion_name=champion,
    )
    parts = [
        _earlier(next((r for r in view.rows if r.name == "evaluate"), None)),
        _cols("".join(left), _chart(chart)),
        _metric_table(metrics, intervals, champion_metrics, comparison),
    ]
    figures = _plots(view, evaluate)
    if figures:
        report = evaluate.artifacts.get("report", "evaluate/report.html")
        parts.append(str(model.plots(figures, report)))
    return _section("model", "Model", intro, "".join(parts), status=evaluate.status)


# ----------------------------------------------------------------------------- scan


def sbom_components(path: Path | None) -> int | None:
    """The number of components in a CycloneDX SBOM, nested ones included."""
    data = _dict(_json_file(path)) if path else {}
    if "components" not in data:
        return None
    count, stack = 0, list(_list(data.get("components")))
    while stack:
        item = _dict(stack.pop())
        count += 1
        stack.extend(_list(item.get("components")))
    return count


def _target_status(part: dict[str, Any]) -> str:
    """`scanned`, or why not; a scanned target with a caveat shows it (e.g. no vuln DB)."""
    return str(_scan_parts().target_status(part.get("scanned"), str(part.get("reason", ""))))


_SCAN_INTRO = (
    "Trivy scans the image (vulnerabilities, secrets, misconfigurations), the Dockerfile "
    "and the repository (secrets); mlcd's own scanner checks every model file. One policy "
    "decides which findings fail the gate; the ignore file can suppress a finding until "
    "a date, with a reason."
)


def _scan_facts(view: RunView, scan: StageResult, scanned: ScanDetails) -> str:
    """The policy, the counts, the SBOM and the tools' versions."""
    m = scan.metrics
    policy = scanned.policy
    sbom = _num(m.get("sbom_components"))
    components = (
        int(sbom)
        if sbom is not None
        else sbom_components(view.file("scan", "sbom", "scan/sbom.cdx.json"))
    )
    db = scanned.db or {}
    return _facts(
        [
            (
                "policy",
                e(
                    f"{policy.get('severity', '?')} or above fails"
                    + ("; unfixed not gated" if policy.get("ignore_unfixed") else "")
                )
                if policy
                else "",
            ),
            ("failing", f"<b>{int(_num(m.get('failing')) or 0)}</b>"),
            ("suppressed", str(int(_num(m.get("suppressed")) or 0))),
            (
                "SBOM",
                f"{components} components (CycloneDX)" if components is not None else "none",
            ),
            ("OS", e(scanned.image_os or "")),
            ("Trivy", e(scanned.trivy_version or "")),
            ("DB", e(str(db.get("updated_at") or db.get("describe") or ""))),
        ]
    )


def _finding_cells(f: Mapping[str, Any]) -> list[str]:
    """The first three cells of a finding's row: severity, id, package or file."""
    return [
        _sev(str(f.get("severity", ""))),
        e(str(f.get("id", ""))),
        e(str(f.get("package") or f.get("path") or "")),
    ]


def _finding_tables(view: RunView) -> list[str]:
    """The failing findings, then the suppressed ones, from `scan/findings.json`."""
    findings_path = view.file("scan", "findings", "scan/findings.json")
    findings = _list(_dict(_json_file(findings_path)).get("findings")) if findings_path else []
    parts = []
    failing = [_dict(f) for f in findings if _dict(f).get("gate") == "fail"]
    if failing:
        rows = [
            [
                *_finding_cells(f),
                *(e(str(f.get(k, ""))) for k in ("installed", "fixed")),
                e(str(f.get("title", ""))[:120]),
            ]
            for f in failing[:25]
        ]
        head = ["severity", "id", "package / file", "installed", "fixed", "title"]
        parts.append(str(_scan_parts().failing(len(failing), html_(_table(head, rows)))))
    suppressed = [_dict(f) for f in findings if _dict(f).get("suppressed_by")]
    table = ""
    if suppressed:
        rows = []
        for f in suppressed[:50]:
            by = _dict(f["suppressed_by"])
            reason, expires = (e(str(by.get(k, ""))) for k in ("reason", "expires"))
            rows.append([*_finding_cells(f), reason, expires, e(str(by.get("owner") or ""))])
        head = ["severity", "id", "package / file", "reason", "expires", "owner"]
        table = _table(head, rows)
    parts.append(str(_scan_parts().suppressed(len(suppressed), html_(table))))
    return parts


def _scan(view: RunView) -> str:
    scan = view.result("scan")
    if scan is None:
        return _section("scan", "Security scan", _SCAN_INTRO, _not_run("scan", "scan"))
    scanned = details(scan, ScanDetails)
    counts = {s: int(_num(scan.metrics.get(f"severity_{s.lower()}")) or 0) for s in SEVERITIES}
    targets = [
        [
            e(str(_dict(p).get("target", ""))),
            str(_dict(p).get("findings", 0)),
            _target_status(_dict(p)),
        ]
        for p in scanned.parts
    ]
    right = _chart(severity_bar(counts))
    if targets:
        right += _table(["target", "findings", "status"], targets)
    parts = [
        _earlier(next((r for r in view.rows if r.name == "scan"), None)),
        _cols(_scan_facts(view, scan, scanned), right),
        *_finding_tables(view),
    ]
    expired = scanned.expired_ignores
    if expired:
        entries = [(str(_dict(x).get("id", "")), str(_dict(x).get("expires"))) for x in expired]
        parts.append(str(_scan_parts().expired(entries)))
    return _section("scan", "Security scan", _SCAN_INTRO, "".join(parts), status=scan.status)


def _sev(severity: str) -> str:
    colour = SEVERITY_COLOUR.get(severity.upper(), "#9aa0a6")
    return f'<span class="sev" style="background:{colour}">{e(severity)}</span>'


# ----------------------------------------------------------------------------- image


def _stat(value: str, label: str) -> str:
    return str(_parts().stat(value, label))


def _signed(signing: dict[str, Any]) -> str:
    """The release's signing on the run page: the key and where the statement is, or off."""
    if signing.get("mode") == "key":
        return (
            f"yes: model and image, key {_code(str(signing.get('key', ''))[:16] + '…')}, "
            f"statement {_code(str(signing.get('attestation_tag', '')))}"
        )
    return "<strong>no</strong>: signing is off in mlcd.yaml (docs/signing.md)"


def _image(view: RunView) -> str:
    build, release = view.result("build"), view.result("release")
    intro = (
        "The serving image is built without network access from locked wheels, then "
        "contract-tested: it must answer the held-out rows exactly as the model does. A "
        "release pushes it; from then on it is addressed by the registry's digest."
    )
    if build is None and release is None:
        return _section(
            "image",
            "Image and release",
            intro,
            _not_run("build", "image") + _not_run("release", "release"),
        )
    stats: list[str] = []
    facts: list[tuple[str, str]] = []
    notes = [_earlier(next((r for r in view.rows if r.name == n), None)) for n in ("build",)]
    if build is not None:
        d = details(build, BuildDetails)
        size = _num(d.size_mb)
        if size is not None:
            stats.append(_stat(f"{size:g} MB", "image size"))
        contract = d.contract
        if contract.skipped:
            stats.append(_stat("skipped", "contract test"))
        elif contract.model_fields_set or contract.model_extra:
            stats.append(
                _stat(
                    f"{contract.agree}/{contract.rows}",
                    "contract: predictions equal" + ("" if contract.passed else " (FAILED)"),
                )
            )
        if _num(d.build_seconds) is not None:
            stats.append(
                _stat(
                    f"{d.build_seconds} s",
                    f"build, {d.cached_steps}/{d.steps} steps cached",
                )
            )
        facts += [
            ("built image", _code(d.image)),
            ("tag", _code(d.tag)),
            (
                "base, user",
                " ".join(x for x in (_code(d.base_image), _code(d.user)) if x),
            ),
        ]
    else:
        notes.append(_not_run("build", "build"))
    if release is not None:
        r = details(release, ReleaseDetails)
        if r.version:
            stats.insert(0, _stat(r.version, "release"))
        facts += [
            ("pushed image", _code(r.image)),
            ("model version", e(r.model_version or "")),
            ("evidence bundle", _code(r.evidence_digest)),
            ("released", e(r.released)),
            ("signed", _signed(r.signing)),
        ]
        if release.status != "pass" or not r.version:
            facts.append(("release", f"{_pill(release.status)} {e(release.summary)}"))
    else:
        notes.append(_not_run("release", "release"))
    body = "".join(notes) + str(_parts().stats(html_("".join(stats)))) + _facts(facts)
    status = build.status if build is not None else release.status if release else ""
    return _section("image", "Image and release", intro, body, status=status)


# ----------------------------------------------------------------------------- rollout


def _weight(entry: Mapping[str, Any], metrics: Mapping[str, Any]) -> float:
    for value in (_num(entry.get("weight")), _num(metrics.get("weight"))):
        if value is not None:
            return value
    found = re.search(r"(\d+(?:\.\d+)?)\s*%", str(entry.get("phase", "")))
    return float(found.group(1)) if found else 0.0


def intervals(deploy: DeployDetails | Mapping[str, Any]) -> list[Interval]:
    """The analysis intervals of one deploy result, oldest first."""
    deployed = deploy if isinstance(deploy, DeployDetails) else parse(DeployDetails, deploy)
    out: list[Interval] = []
    previous: dict[str, float] = {}
    for index, raw in enumerate(deployed.measurements, 1):
        entry = _dict(raw)
        metrics = _dict(entry.get("metrics"))
        counts: dict[str, int | None] = {}
        for arm in ("canary", "stable"):
            for what in ("requests", "errors"):
                key = f"{arm}_{what}"
                given = _num(metrics.get(f"interval_{key}"))
                total = _num(metrics.get(key))
                if given is not None:
                    counts[key] = int(given)
                elif total is not None:
                    before = previous.get(key, 0.0)
                    # the judge's totals only grow within one analysis; a drop is a new one
                    counts[key] = int(total - before) if total >= before else int(total)
                else:
                    counts[key] = None
                if total is not None:
                    previous[key] = total
        reasons = _list(entry.get("reasons"))
        out.append(
            Interval(
                index=index,
                time=str(entry.get("time", "")),
                phase=str(entry.get("phase", "")),
                outcome=str(entry.get("outcome", "")),
                weight=_weight(entry, metrics),
                canary_requests=counts["canary_requests"],
                canary_errors=counts["canary_errors"],
                stable_requests=counts["stable_requests"],
                stable_errors=counts["stable_errors"],
                canary_p99_ms=_num(metrics.get("canary_p99_ms")),
                stable_p99_ms=_num(metrics.get("stable_p99_ms")),
                canary_p50_ms=_num(metrics.get("canary_p50_ms")),
                stable_p50_ms=_num(metrics.get("stable_p50_ms")),
                reason=str(reasons[0]) if reasons else "",
            )
        )
    return out


_ARM_NAMES = {
    "canary": ("canary", "stable"),
    "blue-green": ("new version", "live version"),
    "shadow": ("shadow", "stable"),
}


_INTERVAL_HEAD = (
    "#",
    "phase",
    "traffic",
    "outcome",
    "canary req / err",
    "stable req / err",
    "p99 canary / stable",
    "first reason",
)


def _interval_row(s: Interval) -> list[str]:
    return [
        str(s.index),
        e(s.phase),
        f"{s.weight:g}%",
        e(s.outcome),
        f"{_fmt(s.canary_requests)} / {_fmt(s.canary_errors)}",
        f"{_fmt(s.stable_requests)} / {_fmt(s.stable_errors)}",
        f"{_fmt(s.canary_p99_ms, 1)} / {_fmt(s.stable_p99_ms, 1)} ms",
        e(s.reason[:140]),
    ]


def _deploy(row: StageRow) -> str:
    """One environment: what was rolled out, the timeline and its intervals as a table."""
    env = stagenames.deploy_label(row.name)
    rollout = pages.macros("rollout.html.j2")
    if row.result is None:
        return str(rollout.environment(env, row.status))
    d = details(row.result, DeployDetails)
    steps = intervals(d)
    chart = table = ""
    if steps:
        chart = timeline_chart(
            steps,
            outcome=d.outcome,
            max_error_rate=_num(d.analysis.get("max_error_rate")),
            max_p99_ms=_num(d.analysis.get("max_p99_latency_ms")),
            names=_ARM_NAMES.get(d.strategy, ("canary", "stable")),
        )
        table = _table(_INTERVAL_HEAD, [_interval_row(s) for s in steps], css="small")
    return str(
        rollout.environment(
            env,
            row.result.status,
            d,
            steps,
            html_(_earlier(row)),
            row.result.summary,
            html_(chart),
            html_(table),
        )
    )


def _rollout(view: RunView) -> str:
    intro = (
        "Each environment gets the release by its strategy. During a canary a growing share "
        "of traffic goes to the new version; every interval, a judge compares its error rate, "
        "latency and predictions with the stable version and promotes, waits or rolls back. "
        "Blue/green analyses the new version beside the old before switching all traffic."
    )
    rows = [r for r in view.rows if stagenames.is_deploy(r.name)]
    if not rows:
        return _section("rollout", "Rollout", intro, _not_run("deploy", "rollout"))
    body = "".join(_deploy(r) for r in rows)
    return _section("rollout", "Rollout", intro, body)


# ----------------------------------------------------------------------------- page


def render_html(bundle: Bundle, planned: Sequence[str] | None = None) -> str:
    """The whole page as one string."""
    view = collect(bundle, planned)
    judged = verdict(view)
    run = view.run
    project = ""
    config = str(run.get("config") or "")
    for stage in ("train", "evaluate", "build"):
        result = view.result(stage)
        name = _details(result, model_for(stage)).first("name")
        if stage == "train":
            meta = _model_meta(view.file("train", "metadata", "train/model.json"))
            name = meta.name if meta else None
        if name:
            project = str(name)
            break
    inputs = _dict(run.get("inputs")) or next(
        (r.inputs for r in view.results.values() if r.inputs), {}
    )
    sub = []
    if run.get("started"):
        sub.append(f"started {run['started']}")
    if _num(run.get("duration_s")) is not None:
        sub.append(f"took {fmt_seconds(float(run['duration_s']))}")
    if inputs.get("git_sha"):
        sub.append(html_(f"commit <code>{e(str(inputs['git_sha'])[:12])}</code>"))
    if config:
        sub.append(html_(f"config <code>{e(config)}</code>"))
    title = f"mlcd run report{': ' + project if project else ''}"
    return pages.render(
        "report.html.j2",
        title=title,
        css=html_(pages.static("report.css")),
        sub=sub,
        verdict=judged,
        cards=html_(_cards(view)),
        nav=_NAV,
        sections=[html_(part) for part in _sections(view)],
        version=__version__,
        root=str(bundle.root),
    )


_NAV = (
    ("stages", "Stages"),
    ("model", "Model"),
    ("scan", "Security scan"),
    ("image", "Image"),
    ("rollout", "Rollout"),
)


def _sections(view: RunView) -> list[str]:
    return [
        _section(
            "stages",
            "Stages",
            "Every stage of the pipeline, in the order it runs. Each wrote "
            "<code>&lt;stage&gt;/result.json</code> and <code>summary.md</code> next to this "
            "page; a stage that did not run says so.",
            _stages(view),
        ),
        _model(view),
        _scan(view),
        _image(view),
        _rollout(view),
    ]


def write_html(out: Path, planned: Sequence[str] | None = None) -> Path:
    """Render `<out>/report.html` and return its path."""
    path = out / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(Bundle(out), planned)
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)
    return path

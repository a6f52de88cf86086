"""`<out>/report.html`: one self-contained page for a whole run.

Everything on the page comes from the evidence bundle (DESIGN.md section 3): `run.json`,
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
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd import __version__
from mlcd.errors import MlcdError
from mlcd.evidence import STATUSES, Bundle, StageResult
from mlcd.progress import fmt_seconds

REPORT_FILE = "report.html"
# The stages of a full run, in the workflow's order; deploy-<env> stages follow them.
PIPELINE = ("lint", "test", "train", "evaluate", "build", "scan", "release")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")

# Colours: the candidate / canary (the new thing) is blue, the champion / stable (what is
# live) orange, as on the evaluation's own plots. Each chart has a colour no other part
# of the page uses, so a screenshot shows which parts were drawn.
CANDIDATE = "#1f77b4"
CHAMPION = "#ff7f0e"
WEIGHT = "#12b5cb"  # traffic on the canary (rollout timeline)
LIMIT = "#c5221f"  # a configured bound (threshold, max error rate, max latency)
SEVERITY_COLOUR = dict(
    zip(SEVERITIES, ("#7b1fa2", "#e8453c", "#f9ab00", "#4285f4", "#9aa0a6"), strict=True)
)
_STATUS_WORD: dict[str, str] = dict(
    zip(STATUSES, ("passed", "failed", "error", "skipped"), strict=True)
)
# Keyed by the judge's outcomes (a literal {"pass": …} reads as a password to bandit B105).
_OUTCOME_COLOUR: dict[str, str] = dict(
    zip(
        ("pass", "fail", "error", "inconclusive"),
        ("#34a853", "#d93025", "#f29900", "#9aa0a6"),
        strict=True,
    )
)
_BOUNDED = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
_PRETTY = {
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "log_loss": "log loss",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

e = html.escape


# ----------------------------------------------------------------------------- reading


def _json_file(path: Path) -> Any:
    """The JSON in a file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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
        p.parent.name for p in bundle.root.glob("deploy-*/result.json") if p.parent.is_dir()
    )
    for name in [*recorded, *found]:
        if name.startswith("deploy-") and name not in names:
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
            r.name.removeprefix("deploy-")
            for r in ran
            if r.name.startswith("deploy-") and r.status == "pass"
        ]
        release = view.result("release")
        version = str(release.details.get("version", "")) if release else ""
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


def _fmt(value: Any, digits: int = 4) -> str:
    number = _num(value)
    if number is None:
        return "n/a" if value is None or isinstance(value, int | float) else e(str(value))
    if float(number).is_integer() and abs(number) >= 1 and not isinstance(value, float):
        return f"{int(number):,}"
    return f"{number:.{digits}f}"


def _pill(status: str) -> str:
    word = _STATUS_WORD.get(status, status)
    css = status if status in STATUSES else "notrun"
    return f'<span class="pill {css}">{e(word)}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    out = [f"<table{cls}><thead><tr>", *(f"<th>{e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "".join(out)


def _facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list: label, then value (values are HTML already)."""
    items = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v)
    return f'<dl class="facts">{items}</dl>'


def _code(text: str) -> str:
    return f"<code>{e(text)}</code>" if text else ""


def _section(anchor: str, title: str, intro: str, body: str, *, status: str = "") -> str:
    badge = f" {_pill(status)}" if status else ""
    return (
        f'<section id="{anchor}"><h2>{e(title)}{badge}</h2>'
        f'<p class="intro">{intro}</p>{body}</section>'
    )


def _not_run(stage: str, what: str) -> str:
    return (
        f'<p class="notrun-note">{e(stage)} did not run in this run, so there is no {e(what)} '
        f"to show. Run <code>mlcd {e(stage)}</code> (or <code>mlcd run</code>) to add it.</p>"
    )


def _earlier(row: StageRow | None) -> str:
    if row is None or not row.earlier:
        return ""
    return (
        f'<p class="note">These results are from an earlier run ({e(row.started)}), not from '
        "the run this page reports.</p>"
    )


# ----------------------------------------------------------------------------- SVG


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{e(label)}">'
        f"<title>{e(label)}</title>{body}</svg>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: int = 12,
    colour: str = "#3c4043",
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{colour}" font-weight="{weight}">{e(text)}</text>'
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, *, width: float = 1, dash: str = ""
) -> str:
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{dashed}/>'
    )


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10 * power


# ----------------------------------------------------------------------------- summary cards


def _cards(view: RunView) -> str:
    cards: list[tuple[str, str, str]] = []
    evaluate = view.result("evaluate")
    if evaluate is not None:
        registry = _dict(evaluate.details.get("registry"))
        metrics = evaluate.metrics
        key = next((k for k in ("roc_auc", "accuracy", "r2", "rmse") if k in metrics), "")
        value = f"{_PRETTY.get(key, key)} {_fmt(metrics.get(key))}" if key else evaluate.summary
        cards.append(("model", str(registry.get("version") or "candidate"), value))
    release = view.result("release")
    if release is not None and release.details.get("version"):
        cards.append(
            (
                "release",
                str(release.details["version"]),
                _STATUS_WORD.get(release.status, release.status),
            )
        )
    build = view.result("build")
    if build is not None and _num(build.details.get("size_mb")) is not None:
        cards.append(("image", f"{build.details['size_mb']} MB", "serving image"))
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
        if row.name.startswith("deploy-") and row.result is not None:
            d = row.result.details
            cards.append(
                (
                    row.name.removeprefix("deploy-"),
                    str(d.get("version") or row.status),
                    str(d.get("outcome") or row.status),
                )
            )
    if not cards:
        return ""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
            f'<div class="s">{e(s)}</div></div>'
            for k, v, s in cards
        )
        + "</div>"
    )


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


def metric_chart(
    metrics: Mapping[str, Any],
    intervals: Mapping[str, Any],
    champion: Mapping[str, Any],
    thresholds: Mapping[str, float],
    *,
    champion_name: str = "",
) -> str:
    """Candidate (dot and interval) against champion (diamond) and thresholds (red tick),
    one row per bounded metric, on an axis zoomed to where the values are."""
    keys = [k for k in _BOUNDED if _num(metrics.get(k)) is not None]
    if not keys:
        return ""
    values: list[float] = []
    for k in keys:
        values.append(float(metrics[k]))
        pair = _list(intervals.get(k))
        values += [v for v in (_num(x) for x in pair) if v is not None]
        values += [v for v in (_num(champion.get(k)), _num(thresholds.get(k))) if v is not None]
    low = max(0.0, math.floor((min(values) - 0.01) * 50) / 50)
    high = min(1.0, math.ceil((max(values) + 0.005) * 50) / 50) if max(values) <= 1 else 1.0
    high = max(high, low + 0.02)
    left, right, row_h, top = 80, 420, 30, 30
    width, height = right + 20, top + row_h * len(keys) + 40

    def x(v: float) -> float:
        return left + (right - left) * (min(max(v, low), high) - low) / (high - low)

    parts = []
    for i in range(6):
        tick = low + (high - low) * i / 5
        parts.append(_line(x(tick), top - 8, x(tick), height - 32, "#e8eaed"))
        parts.append(_text(x(tick), height - 16, f"{tick:.3f}", anchor="middle", size=11))
    for i, k in enumerate(keys):
        y = top + row_h * i + row_h / 2
        parts.append(_text(left - 10, y + 4, _PRETTY.get(k, k), anchor="end", size=13))
        pair = [_num(v) for v in _list(intervals.get(k))]
        if len(pair) == 2 and pair[0] is not None and pair[1] is not None:
            parts.append(_line(x(pair[0]), y, x(pair[1]), y, CANDIDATE, width=3))
        bound = _num(thresholds.get(k))
        if bound is not None:
            parts.append(_line(x(bound), y - 11, x(bound), y + 11, LIMIT, width=3))
        theirs = _num(champion.get(k))
        if theirs is not None:
            cx = x(theirs)
            parts.append(
                f'<path d="M{cx:.1f} {y - 8:.1f} L{cx + 8:.1f} {y:.1f} L{cx:.1f} {y + 8:.1f} '
                f'L{cx - 8:.1f} {y:.1f} Z" fill="{CHAMPION}"/>'
            )
        mine = float(metrics[k])
        parts.append(f'<circle cx="{x(mine):.1f}" cy="{y:.1f}" r="7" fill="{CANDIDATE}"/>')
        parts.append(_text(right + 14, y + 4, f"{mine:.4f}", size=12, weight="bold"))
    legend = [
        f'<circle cx="{left + 6}" cy="12" r="6" fill="{CANDIDATE}"/>',
        _text(left + 16, 16, "candidate (line: 95% interval)", size=11),
    ]
    if any(_num(champion.get(k)) is not None for k in keys):
        lx = left + 200
        legend += [
            f'<path d="M{lx} 5 L{lx + 7} 12 L{lx} 19 L{lx - 7} 12 Z" fill="{CHAMPION}"/>',
            _text(lx + 12, 16, f"champion {champion_name}".strip()),
        ]
    if any(k in thresholds for k in keys):
        lx = left + 320
        legend += [_line(lx, 4, lx, 20, LIMIT, width=3), _text(lx + 8, 16, "threshold")]
    return _svg(
        width + 50, height, "".join(legend + parts), "metrics of the candidate and the champion"
    )


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


def _plots(view: RunView, evaluate: StageResult) -> str:
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
        figures.append(
            f'<figure><a href="{e(rel)}"><img src="{uri}" alt="{e(title)}"></a>'
            f"<figcaption>{e(title)}</figcaption></figure>"
        )
    if not figures:
        return ""
    return '<div class="plots">' + "".join(figures) + "</div>"


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
    for name in (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "rmse",
        "mae",
        "r2",
    ):
        if name not in metrics:
            continue
        pair = [_num(v) for v in _list(intervals.get(name))]
        interval = (
            f"[{pair[0]:.4f}, {pair[1]:.4f}]"
            if len(pair) == 2 and pair[0] is not None and pair[1] is not None
            else "n/a"
        )
        row = [e(_PRETTY.get(name, name)), f"<b>{_fmt(metrics[name])}</b>", interval]
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
        body = ""
        if train is not None:
            body += f"<p>Trained: {e(train.summary)}</p>"
        return _section("model", "Model", intro, body + _not_run("evaluate", "evaluation"))
    verdict_path = view.file("evaluate", "verdict", "evaluate/verdict.json")
    data = _dict(_json_file(verdict_path)) if verdict_path else {}
    details = evaluate.details
    comparison = _dict(data.get("comparison") or details.get("comparison"))
    intervals = _dict(data.get("intervals") or details.get("intervals"))
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
    meta_path = view.file("train", "metadata", "train/model.json")
    meta = _dict(_json_file(meta_path)) if meta_path else {}
    registry = _dict(details.get("registry"))
    facts = _facts(
        [
            ("model version", e(str(registry.get("version") or ""))),
            ("estimator", e(" ".join(str(meta.get(k) or "") for k in ("estimator", "task")))),
            ("target", _code(str(meta.get("target") or ""))),
            (
                "held-out rows",
                _fmt(data.get("holdout_rows") or (train and train.metrics.get("holdout_rows"))),
            ),
            ("trained", e(train.summary) if train else ""),
        ]
    )
    left = [facts]
    if checks:
        items = "".join(
            f'<li class="{"ok" if _dict(c).get("passed") else "bad"}">'
            f"{'✓' if _dict(c).get('passed') else '✗'} {e(str(_dict(c).get('line', '')))}</li>"
            for c in checks
        )
        left.append(f'<h3>Checks</h3><ul class="checks">{items}</ul>')
    else:
        left.append(
            "<ul class='checks'>" + "".join(f"<li>{e(r)}</li>" for r in evaluate.reasons) + "</ul>"
        )
    said = any(_dict(c).get("kind") == "champion" for c in checks)
    if comparison.get("status") != "compared" and comparison.get("reason") and not said:
        left.append(f"<p><b>Champion:</b> {e(str(comparison['reason']))}</p>")
    chart = metric_chart(
        metrics, intervals, champion_metrics, _thresholds(checks), champion_name=champion
    )
    right = f'<div class="chart">{chart}</div>' if chart else ""
    parts = [
        _earlier(next((r for r in view.rows if r.name == "evaluate"), None)),
        f'<div class="cols"><div>{"".join(left)}</div><div>{right}</div></div>',
        _metric_table(metrics, intervals, champion_metrics, comparison),
    ]
    plots = _plots(view, evaluate)
    if plots:
        report = evaluate.artifacts.get("report", "evaluate/report.html")
        parts.append(
            f'<h3>Plots</h3><p class="intro">From the evaluation (<a href="{e(report)}">'
            f"{e(report)}</a> has them full size, with slices).</p>{plots}"
        )
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


def severity_bar(counts: Mapping[str, int], *, width: int = 520) -> str:
    """A stacked bar of findings by severity, with a legend."""
    total = sum(counts.values())
    parts = []
    x = 0.0
    bar_y, bar_h = 6, 30
    if total == 0:
        parts.append(
            f'<rect x="0" y="{bar_y}" width="{width}" height="{bar_h}" rx="4" fill="#e6f4ea"/>'
        )
        parts.append(_text(width / 2, bar_y + 20, "no findings", anchor="middle", size=13))
    else:
        for sev in SEVERITIES:
            n = counts.get(sev, 0)
            if not n:
                continue
            w = max(width * n / total, 6)
            parts.append(
                f'<rect x="{x:.1f}" y="{bar_y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{SEVERITY_COLOUR[sev]}"/>'
            )
            if w > 30:
                parts.append(
                    _text(
                        x + w / 2,
                        bar_y + 20,
                        str(n),
                        anchor="middle",
                        size=13,
                        colour="#fff",
                        weight="bold",
                    )
                )
            x += w
    lx = 0
    for sev in SEVERITIES:
        parts.append(
            f'<rect x="{lx}" y="{bar_y + bar_h + 12}" width="14" height="14" '
            f'fill="{SEVERITY_COLOUR[sev]}"/>'
        )
        parts.append(_text(lx + 20, bar_y + bar_h + 24, f"{sev.lower()} {counts.get(sev, 0)}"))
        lx += 104
    return _svg(width, bar_y + bar_h + 34, "".join(parts), "findings by severity")


def _target_status(part: dict[str, Any]) -> str:
    """`scanned`, or why not; a scanned target with a caveat shows it (e.g. no vuln DB)."""
    reason = e(str(part.get("reason", "")))
    if not part.get("scanned"):
        return reason
    return f"scanned; <b>{reason}</b>" if reason else "scanned"


def _scan(view: RunView) -> str:
    scan = view.result("scan")
    intro = (
        "Trivy scans the image (vulnerabilities, secrets, misconfigurations), the Dockerfile "
        "and the repository (secrets); mlcd's own scanner checks every model file. One policy "
        "decides which findings fail the gate; the ignore file can suppress a finding until "
        "a date, with a reason."
    )
    if scan is None:
        return _section("scan", "Security scan", intro, _not_run("scan", "scan"))
    m = scan.metrics
    counts = {s: int(_num(m.get(f"severity_{s.lower()}")) or 0) for s in SEVERITIES}
    policy = _dict(scan.details.get("policy"))
    sbom = _num(m.get("sbom_components"))
    components = (
        int(sbom)
        if sbom is not None
        else sbom_components(view.file("scan", "sbom", "scan/sbom.cdx.json"))
    )
    db = _dict(scan.details.get("db"))
    facts = _facts(
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
            ("OS", e(str(scan.details.get("image_os") or ""))),
            ("Trivy", e(str(scan.details.get("trivy_version") or ""))),
            ("DB", e(str(db.get("updated_at") or db.get("describe") or ""))),
        ]
    )
    targets = [
        [
            e(str(_dict(p).get("target", ""))),
            str(_dict(p).get("findings", 0)),
            _target_status(_dict(p)),
        ]
        for p in _list(scan.details.get("parts"))
    ]
    right = f'<div class="chart">{severity_bar(counts)}</div>'
    if targets:
        right += _table(["target", "findings", "status"], targets)
    parts = [
        _earlier(next((r for r in view.rows if r.name == "scan"), None)),
        f'<div class="cols"><div>{facts}</div><div>{right}</div></div>',
    ]
    findings_path = view.file("scan", "findings", "scan/findings.json")
    findings = _list(_dict(_json_file(findings_path)).get("findings")) if findings_path else []
    failing = [_dict(f) for f in findings if _dict(f).get("gate") == "fail"]
    if failing:
        parts.append(f"<h3>Failing findings ({len(failing)})</h3>")
        parts.append(
            _table(
                ["severity", "id", "package / file", "installed", "fixed", "title"],
                [
                    [
                        _sev(str(f.get("severity", ""))),
                        e(str(f.get("id", ""))),
                        e(str(f.get("package") or f.get("path") or "")),
                        e(str(f.get("installed", ""))),
                        e(str(f.get("fixed", ""))),
                        e(str(f.get("title", ""))[:120]),
                    ]
                    for f in failing[:25]
                ],
            )
        )
    suppressed = [_dict(f) for f in findings if _dict(f).get("suppressed_by")]
    parts.append(f"<h3>Suppressions ({len(suppressed)})</h3>")
    if suppressed:
        parts.append(
            _table(
                ["severity", "id", "package / file", "reason", "expires", "owner"],
                [
                    [
                        _sev(str(f.get("severity", ""))),
                        e(str(f.get("id", ""))),
                        e(str(f.get("package") or f.get("path") or "")),
                        e(str(_dict(f["suppressed_by"]).get("reason", ""))),
                        e(str(_dict(f["suppressed_by"]).get("expires", ""))),
                        e(str(_dict(f["suppressed_by"]).get("owner") or "")),
                    ]
                    for f in suppressed[:50]
                ],
            )
        )
    else:
        parts.append("<p>No finding is suppressed.</p>")
    expired = _list(_dict(scan.details.get("ignores")).get("expired"))
    if expired:
        parts.append(
            "<p class='bad'>Expired ignore entries (they suppress nothing now): "
            + ", ".join(
                f"<code>{e(str(_dict(x).get('id', '')))}</code> ({e(str(_dict(x).get('expires')))})"
                for x in expired
            )
            + "</p>"
        )
    return _section("scan", "Security scan", intro, "".join(parts), status=scan.status)


def _sev(severity: str) -> str:
    colour = SEVERITY_COLOUR.get(severity.upper(), "#9aa0a6")
    return f'<span class="sev" style="background:{colour}">{e(severity)}</span>'


# ----------------------------------------------------------------------------- image


def _stat(value: str, label: str) -> str:
    return f'<div class="stat"><div class="v">{e(value)}</div><div class="s">{e(label)}</div></div>'


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
        d = build.details
        size = _num(d.get("size_mb"))
        if size is not None:
            stats.append(_stat(f"{size:g} MB", "image size"))
        contract = _dict(d.get("contract"))
        if contract.get("skipped"):
            stats.append(_stat("skipped", "contract test"))
        elif contract:
            stats.append(
                _stat(
                    f"{contract.get('agree')}/{contract.get('rows')}",
                    "contract: predictions equal" + ("" if contract.get("passed") else " (FAILED)"),
                )
            )
        if _num(d.get("build_seconds")) is not None:
            stats.append(
                _stat(
                    f"{d['build_seconds']} s",
                    f"build, {d.get('cached_steps')}/{d.get('steps')} steps cached",
                )
            )
        facts += [
            ("built image", _code(str(d.get("image") or ""))),
            ("tag", _code(str(d.get("tag") or ""))),
            (
                "base, user",
                " ".join(
                    x
                    for x in (
                        _code(str(d.get("base_image") or "")),
                        _code(str(d.get("user") or "")),
                    )
                    if x
                ),
            ),
        ]
    else:
        notes.append(_not_run("build", "build"))
    if release is not None:
        d = release.details
        if d.get("version"):
            stats.insert(0, _stat(str(d["version"]), "release"))
        facts += [
            ("pushed image", _code(str(d.get("image") or ""))),
            ("model version", e(str(d.get("model_version") or ""))),
            ("evidence bundle", _code(str(d.get("evidence_digest") or ""))),
            ("released", e(str(d.get("released") or ""))),
        ]
        if release.status != "pass" or not d.get("version"):
            facts.append(("release", f"{_pill(release.status)} {e(release.summary)}"))
    else:
        notes.append(_not_run("release", "release"))
    body = "".join(notes) + f'<div class="stats">{"".join(stats)}</div>' + _facts(facts)
    status = build.status if build is not None else release.status if release else ""
    return _section("image", "Image and release", intro, body, status=status)


# ----------------------------------------------------------------------------- rollout


@dataclass(frozen=True)
class Interval:
    """One analysis interval of a rollout, as the timeline draws it.

    Read from `deploy-<env>/result.json` `details.measurements` (one entry per interval:
    `time`, `phase`, `outcome`, `reasons`, `metrics`). `weight` is the percentage of users'
    traffic on the canary: `weight` of the entry when the deploy stage writes it, else the
    number in a phase like "canary 10%", else 0 (a blue/green preview or a shadow gets
    synthetic or mirrored traffic only). Request and error counts are this interval's:
    `metrics.interval_canary_errors` when written, else the difference of the judge's
    cumulative `canary_errors` from the interval before.
    """

    index: int
    time: str
    phase: str
    outcome: str
    weight: float
    canary_requests: int | None
    canary_errors: int | None
    stable_requests: int | None
    stable_errors: int | None
    canary_p99_ms: float | None
    stable_p99_ms: float | None
    canary_p50_ms: float | None
    stable_p50_ms: float | None
    reason: str = ""

    @property
    def canary_error_rate(self) -> float | None:
        return _rate(self.canary_errors, self.canary_requests)

    @property
    def stable_error_rate(self) -> float | None:
        return _rate(self.stable_errors, self.stable_requests)


def _rate(errors: int | None, requests: int | None) -> float | None:
    if errors is None or not requests:
        return None
    return errors / requests


def _weight(entry: Mapping[str, Any], metrics: Mapping[str, Any]) -> float:
    for value in (_num(entry.get("weight")), _num(metrics.get("weight"))):
        if value is not None:
            return value
    found = re.search(r"(\d+(?:\.\d+)?)\s*%", str(entry.get("phase", "")))
    return float(found.group(1)) if found else 0.0


def intervals(details: Mapping[str, Any]) -> list[Interval]:
    """The analysis intervals of one deploy result, oldest first."""
    out: list[Interval] = []
    previous: dict[str, float] = {}
    for index, raw in enumerate(_list(details.get("measurements")), 1):
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


def _final_weight(outcome: str) -> float | None:
    """Where the traffic ended: all on the new version, or all back on the old one."""
    if outcome in ("promoted", "deployed"):
        return 100.0
    if outcome in ("rolled back", "refused by gates"):
        return 0.0
    return None


def timeline_chart(
    steps: Sequence[Interval],
    *,
    outcome: str = "",
    max_error_rate: float | None = None,
    max_p99_ms: float | None = None,
    names: tuple[str, str] = ("canary", "stable"),
    width: int = 1040,
) -> str:
    """Three panels over the analysis intervals: traffic on the canary, error rate and p99
    latency of canary (blue) against stable (orange); dashed red lines are the limits."""
    final = _final_weight(outcome)
    columns = len(steps) + (1 if final is not None else 0)
    left, right = 160, width - 20
    band = (right - left) / max(columns, 1)
    panel_h, gap, top = 80, 24, 30

    def cx(i: int) -> float:
        return left + band * (i + 0.5)

    parts: list[str] = []
    legend_y = 14
    parts += [
        f'<rect x="{left}" y="{legend_y - 10}" width="14" height="12" fill="{WEIGHT}"/>',
        _text(left + 20, legend_y, f"users' traffic on the {names[0]}"),
        _line(left + 250, legend_y - 4, left + 274, legend_y - 4, CANDIDATE, width=3),
        _text(left + 280, legend_y, names[0]),
        _line(left + 390, legend_y - 4, left + 414, legend_y - 4, CHAMPION, width=3, dash="6 3"),
        _text(left + 420, legend_y, names[1]),
        _line(left + 530, legend_y - 4, left + 554, legend_y - 4, LIMIT, width=2, dash="4 4"),
        _text(left + 560, legend_y, "limit (analysis)"),
    ]

    def panel(index: int, label: str, unit_top: float, ticks: list[str]) -> tuple[float, float]:
        y0 = top + index * (panel_h + gap)
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{right - left}" height="{panel_h}" '
            'fill="#fafafa" stroke="#dadce0"/>'
        )
        parts.append(
            _text(left - 52, y0 + panel_h / 2 + 4, label, anchor="end", size=12, weight="bold")
        )
        for j, tick in enumerate(ticks):
            ty = y0 + panel_h - panel_h * j / (len(ticks) - 1)
            parts.append(_line(left, ty, right, ty, "#eceff1"))
            parts.append(_text(left - 6, ty + 4, tick, anchor="end", size=10, colour="#5f6368"))
        _ = unit_top
        return y0, y0 + panel_h

    # 1. weight
    y0, y1 = panel(0, "traffic %", 100, ["0", "50", "100"])
    weights = [s.weight for s in steps] + ([final] if final is not None else [])
    for i, w in enumerate(weights):
        h = panel_h * (w or 0) / 100
        x0 = left + band * i + band * 0.12
        parts.append(
            f'<rect x="{x0:.1f}" y="{y1 - h:.1f}" width="{band * 0.76:.1f}" height="{h:.1f}" '
            f'fill="{WEIGHT}"/>'
        )
        parts.append(
            _text(
                cx(i),
                y1 - h - 4 if h < panel_h - 14 else y1 - h + 14,
                f"{w:g}%",
                anchor="middle",
                size=11,
                colour="#202124" if h < panel_h - 14 else "#fff",
            )
        )

    def series(
        y_top: float,
        y_bottom: float,
        values: list[float | None],
        high: float,
        colour: str,
        *,
        dash: str = "",
    ) -> None:
        points = [
            (cx(i), y_bottom - (y_bottom - y_top) * min(v, high) / high)
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="3"'
                f"{dashed}/>"
            )
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>' for x, y in points
        )

    # 2. error rate
    canary_rates = [s.canary_error_rate for s in steps]
    stable_rates = [s.stable_error_rate for s in steps]
    seen = [v for v in canary_rates + stable_rates if v is not None]
    high = _nice_ceiling(max([*seen, (max_error_rate or 0) * 1.25, 0.002]))
    y0, y1 = panel(1, "error rate", high, ["0", f"{high / 2:.2%}", f"{high:.2%}"])
    if max_error_rate is not None:
        ly = y1 - panel_h * min(max_error_rate, high) / high
        parts.append(_line(left, ly, right, ly, LIMIT, width=2, dash="4 4"))
    series(y0, y1, stable_rates, high, CHAMPION, dash="6 3")
    series(y0, y1, canary_rates, high, CANDIDATE)

    # 3. latency
    canary_p99 = [s.canary_p99_ms for s in steps]
    stable_p99 = [s.stable_p99_ms for s in steps]
    seen = [v for v in canary_p99 + stable_p99 if v is not None]
    high = _nice_ceiling(max([*seen, (max_p99_ms or 0) * 1.1, 1.0]))
    y0, y1 = panel(2, "p99 latency ms", high, ["0", f"{high / 2:g}", f"{high:g}"])
    if max_p99_ms is not None:
        ly = y1 - panel_h * min(max_p99_ms, high) / high
        parts.append(_line(left, ly, right, ly, LIMIT, width=2, dash="4 4"))
    series(y0, y1, stable_p99, high, CHAMPION, dash="6 3")
    series(y0, y1, canary_p99, high, CANDIDATE)

    # x axis: interval, phase, outcome
    axis_y = y1 + 18
    for i, s in enumerate(steps):
        colour = _OUTCOME_COLOUR.get(s.outcome, "#9aa0a6")
        parts.append(_text(cx(i), axis_y, f"#{s.index} {s.phase}", anchor="middle", size=11))
        parts.append(
            f'<rect x="{cx(i) - 42:.1f}" y="{axis_y + 6}" width="84" height="16" rx="8" '
            f'fill="{colour}"/>'
        )
        parts.append(
            _text(
                cx(i),
                axis_y + 18,
                s.outcome,
                anchor="middle",
                size=10,
                colour="#fff",
                weight="bold",
            )
        )
    if final is not None:
        i = len(steps)
        parts.append(_text(cx(i), axis_y, "end", anchor="middle", size=11))
        parts.append(_text(cx(i), axis_y + 18, outcome, anchor="middle", size=11, weight="bold"))
    height = int(axis_y + 30)
    return _svg(width, height, "".join(parts), "rollout timeline")


def _deploy(row: StageRow) -> str:
    env = row.name.removeprefix("deploy-")
    result = row.result
    if result is None:
        body = _not_run(f"deploy {env}", "rollout")
        return f'<div class="env"><h3>{e(env)} {_pill(row.status)}</h3>{body}</div>'
    d = result.details
    steps = intervals(d)
    analysis = _dict(d.get("analysis"))
    outcome = str(d.get("outcome") or "")
    what = " · ".join(
        x
        for x in (
            f"release <b>{e(str(d['version']))}</b>" if d.get("version") else "",
            f"by {e(str(d['strategy']))}" if d.get("strategy") else "",
            f"router {_code(str(d['router']))}" if d.get("router") else "",
            f"{len(steps)} analysis interval{'s' * (len(steps) != 1)}",
        )
        if x
    )
    parts = [
        (
            f'<div class="env"><h3>{e(env)} {_pill(result.status)} '
            f'<span class="what">{what}</span></h3>'
        ),
        _earlier(row),
        f"<p>{e(result.summary)}</p>",
    ]
    if steps:
        chart = timeline_chart(
            steps,
            outcome=outcome,
            max_error_rate=_num(analysis.get("max_error_rate")),
            max_p99_ms=_num(analysis.get("max_p99_latency_ms")),
            names=_ARM_NAMES.get(str(d.get("strategy")), ("canary", "stable")),
        )
        parts.append(f'<div class="chart">{chart}</div>')
        table = _table(
            [
                "#",
                "phase",
                "traffic",
                "outcome",
                "canary req / err",
                "stable req / err",
                "p99 canary / stable",
                "first reason",
            ],
            [
                [
                    str(s.index),
                    e(s.phase),
                    f"{s.weight:g}%",
                    e(s.outcome),
                    f"{_fmt(s.canary_requests)} / {_fmt(s.canary_errors)}",
                    f"{_fmt(s.stable_requests)} / {_fmt(s.stable_errors)}",
                    f"{_fmt(s.canary_p99_ms, 1)} / {_fmt(s.stable_p99_ms, 1)} ms",
                    e(s.reason[:140]),
                ]
                for s in steps
            ],
            css="small",
        )
        parts.append(f"<details><summary>the intervals as a table</summary>{table}</details>")
    else:
        parts.append(
            "<p class='note'>No analysis intervals: "
            + (
                "nothing was live here before, so there was nothing to compare with."
                if outcome == "deployed"
                else e(outcome or "the deploy stage recorded none")
            )
            + "</p>"
        )
    parts.append("</div>")
    return "".join(parts)


def _rollout(view: RunView) -> str:
    intro = (
        "Each environment gets the release by its strategy. During a canary a growing share "
        "of traffic goes to the new version; every interval, a judge compares its error rate, "
        "latency and predictions with the stable version and promotes, waits or rolls back. "
        "Blue/green analyses the new version beside the old before switching all traffic."
    )
    rows = [r for r in view.rows if r.name.startswith("deploy-")]
    if not rows:
        return _section("rollout", "Rollout", intro, _not_run("deploy", "rollout"))
    body = "".join(_deploy(r) for r in rows)
    return _section("rollout", "Rollout", intro, body)


# ----------------------------------------------------------------------------- page

_CSS = """
:root{--ink:#202124;--muted:#5f6368;--line:#dadce0;--bg:#f8f9fa}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
margin:0;background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:21px;margin:0 0 4px}
h3{font-size:16px;margin:18px 0 8px}
header .sub{color:var(--muted);margin:0 0 16px}
.verdict{border-radius:10px;padding:16px 22px;color:#fff;margin:12px 0 16px}
.verdict .h{font-size:22px;font-weight:700}.verdict .d{opacity:.92}
.verdict.pass{background:#188038}.verdict.fail{background:#c5221f}
.verdict.error{background:#b06000}.verdict.empty{background:#5f6368}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 8px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;
min-width:150px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:700}.card .s{color:var(--muted);font-size:13px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 22px;
margin:14px 0}
.intro{color:var(--muted);margin:0 0 12px;max-width:900px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:14px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);
padding:5px 10px}
td{border-bottom:1px solid #eceff1;padding:5px 10px;vertical-align:top}
table.stages{width:100%}table.stages td:nth-child(-n+3){white-space:nowrap}
table.stages td:nth-child(3){text-align:right}
table.stages td:nth-child(4){overflow-wrap:anywhere}
table.num td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.small{font-size:12.5px}
.pill{display:inline-block;border-radius:10px;padding:0 9px;font-size:12px;font-weight:700;
color:#fff;vertical-align:middle}
.pill.pass{background:#188038}.pill.fail{background:#c5221f}.pill.error{background:#b06000}
.pill.skipped{background:#80868b}
.pill.notrun{background:#fff;color:var(--muted);border:1px solid var(--line)}
.tag{font-size:11px;color:var(--muted);border:1px solid var(--line);border-radius:6px;
padding:0 5px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0 0 8px}
.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
.stats{display:flex;flex-wrap:wrap;gap:28px;margin:4px 0 10px}
.stat .v{font-size:22px;font-weight:700}.stat .s{color:var(--muted);font-size:13px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f4;padding:1px 4px;
border-radius:4px}
ul.checks{list-style:none;padding:0;margin:0 0 8px}ul.checks li.ok{color:#137333}
ul.checks li.bad,.bad{color:#c5221f;font-weight:600}
.chart{overflow-x:auto;margin:6px 0 10px}
.plots{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
figure{margin:0;border:1px solid #eceff1;border-radius:6px;padding:4px;background:#fff}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:var(--muted);text-align:center}
.env{border-top:1px solid #eceff1;padding-top:4px;margin-top:8px}.env p{margin:2px 0}
.env .what{font-weight:normal;font-size:14px;color:var(--muted);margin-left:8px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:28px;align-items:start}
details summary{cursor:pointer;color:#1a73e8;font-size:13px}
.sev{color:#fff;border-radius:4px;padding:0 6px;font-size:12px;font-weight:700}
.note,.notrun-note{color:var(--muted);font-style:italic}
nav a{margin-right:14px;color:#1a73e8;text-decoration:none}
footer{color:var(--muted);font-size:12px;margin-top:24px}
"""


def render_html(bundle: Bundle, planned: Sequence[str] | None = None) -> str:
    """The whole page as one string."""
    view = collect(bundle, planned)
    judged = verdict(view)
    run = view.run
    project = ""
    config = str(run.get("config") or "")
    for stage in ("train", "evaluate", "build"):
        result = view.result(stage)
        name = result.details.get("name") if result else None
        if stage == "train":
            meta_path = view.file("train", "metadata", "train/model.json")
            name = _dict(_json_file(meta_path)).get("name") if meta_path else None
        if name:
            project = str(name)
            break
    inputs = _dict(run.get("inputs")) or next(
        (r.inputs for r in view.results.values() if r.inputs), {}
    )
    sub = []
    if run.get("started"):
        sub.append(f"started {e(str(run['started']))}")
    if _num(run.get("duration_s")) is not None:
        sub.append(f"took {fmt_seconds(float(run['duration_s']))}")
    if inputs.get("git_sha"):
        sub.append(f"commit <code>{e(str(inputs['git_sha'])[:12])}</code>")
    if config:
        sub.append(f"config <code>{e(config)}</code>")
    title = f"mlcd run report{': ' + project if project else ''}"
    sections = [
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
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("stages", "Stages"),
            ("model", "Model"),
            ("scan", "Security scan"),
            ("image", "Image"),
            ("rollout", "Rollout"),
        )
    )
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<header><h1>{e(title)}</h1>",
        (
            '<p class="sub">mlcd lints, tests, trains and evaluates a scikit-learn model, '
            "packages and scans it, releases it and rolls it out; this page is the evidence of "
            f"one run. {' · '.join(sub)}</p>"
        ),
        (
            f'<div class="verdict {judged.status}" id="verdict"><div class="h">'
            f'{e(judged.headline)}</div><div class="d">{e(judged.detail)}</div></div>'
        ),
        _cards(view),
        f"<nav>{nav}</nav></header>",
        *sections,
        (
            f"<footer>Written by mlcd {e(__version__)} from <code>{e(str(bundle.root))}</code>. "
            "The Markdown version of this report: <code>mlcd report</code>.</footer>"
        ),
        "</main></body></html>",
    ]
    return "\n".join(p for p in page if p) + "\n"


def write_html(out: Path, planned: Sequence[str] | None = None) -> Path:
    """Render `<out>/report.html` and return its path."""
    path = out / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(Bundle(out), planned)
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)
    return path

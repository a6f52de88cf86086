"""The evaluation's documents, pure: `summary.md` (table + Mermaid chart), `report.html`
(the PNG plots embedded, so the page stands alone) and `model_card.md` (Hugging Face
layout), each a function of train's metadata and the verdict's JSON form
(`Verdict.to_json()`, what verdict.json holds)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from typing import Any

import yaml

from mlcd import metrics as m
from mlcd.charts import CANDIDATE, CHAMPION
from mlcd.presentation import metric_name
from mlcd.presentation import report_number as _fmt

_PALETTE = f"{CANDIDATE}, {CHAMPION}"
# Mermaid's init directive: the chart's bars and line in the plots' colours
_THEME = '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + _PALETTE + '"}}}}%%'

Doc = Mapping[str, Any]


def _interval(pair: Any) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _icon(passed: bool) -> str:
    return "✅" if passed else "❌"


# ----------------------------------------------------------------------------- summary.md


def mermaid_chart(meta: Doc, verdict: Doc) -> str:
    """A Mermaid `xychart-beta`: candidate as bars, champion as a line (when there is one)."""
    task = meta["task"]
    bounded = ("accuracy", "precision", "recall", "f1", "roc_auc")
    keys = bounded if task == "classification" else ("rmse", "mae")
    cand = verdict["metrics"]
    champ = {r["metric"]: r["champion"] for r in verdict["comparison"]["rows"]}
    if verdict["comparison"]["status"] == "compared" and task == "classification":
        champ |= dict(verdict.get("champion_metrics") or {})
    shown = [k for k in keys if cand.get(k) is not None]
    if not shown:
        return ""
    champion = verdict["comparison"]["champion"] if champ else None
    values = [float(cand[k]) for k in shown]
    line = [champ.get(k) for k in shown] if champion else []
    all_values = values + [float(v) for v in line if v is not None]
    if task == "classification":
        low = max(0.0, math.floor((min(all_values) - 0.02) * 20) / 20)
        axis = f'y-axis "score" {low:g} --> 1'
    else:
        axis = f'y-axis "error" 0 --> {max(all_values) * 1.15:.4g}'
    who = f"candidate (bars) vs champion {champion} (line)" if champion else "candidate"
    rows = [
        "```mermaid",
        _THEME,
        "xychart-beta",
        f'    title "{who}"',
        "    x-axis [" + ", ".join(f'"{k}"' for k in shown) + "]",
        f"    {axis}",
        "    bar [" + ", ".join(f"{v:.4f}" for v in values) + "]",
    ]
    champion_values = [float(v) for v in line if v is not None]
    if champion and len(champion_values) == len(shown):
        rows.append("    line [" + ", ".join(f"{v:.4f}" for v in champion_values) + "]")
    rows.append("```")
    return "\n".join(rows)


def _check_rows(verdict: Doc) -> list[str]:
    lines = ["| check | value | bound | result |", "|---|---:|---|---|"]
    for c in verdict["checks"]:
        what = c["metric"] or c["kind"]
        if c.get("slice"):
            what = f"{what} on {c['slice']}"
        elif c["kind"] == "champion" and c["metric"]:
            what = f"{what} vs champion"
        result = _icon(c["passed"]) + (" pass" if c["passed"] else " **fail**")
        if c["kind"] == "slice-threshold" and not c.get("gated", True):
            result = "not gated (too few rows)"
        note = c["line"] if c["metric"] is None else ""
        bound = c["bound"] or note
        lines.append(f"| {what} | {_fmt(c['value'])} | {bound} | {result} |")
    failed = [c for c in verdict["checks"] if not c["passed"]]
    if failed:
        lines += ["", "**Why it failed:**", ""]
        lines += [f"- {c['line']}" for c in failed]
    return lines


def _comparison_row(r: Doc) -> str:
    iv = r["interval"]
    noise = ""
    if iv and iv[0] is not None and iv[1] is not None:
        noise = " (inside the noise)" if iv[0] <= 0 <= iv[1] else " (outside the noise)"
    if r["gated"]:
        verdict_cell = (
            f"{_icon(r['passed'])} worse by ≤ {r['max_regression']:g}"
            if r["passed"]
            else f"❌ worse by {_fmt(r['worse_by'])} > {r['max_regression']:g}"
        )
    else:
        verdict_cell = "reported, not gated"
    diff = r["difference"]
    diff_text = f"{diff:+.4f}" if diff is not None else "n/a"
    return (
        f"| {r['metric']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | "
        f"{diff_text} | {_interval(iv)}{noise} | {verdict_cell} |"
    )


def _metric_rows(meta: Doc, verdict: Doc) -> list[str]:
    comparison = verdict["comparison"]
    conf = round(verdict["confidence"] * 100)
    rows_note = f"{verdict['holdout_rows']} held-out rows, {verdict['bootstrap_samples']} resamples"
    if comparison["status"] == "compared":
        lines = [
            (
                f"#### Candidate against champion {comparison['champion']} "
                f"(paired bootstrap, {conf}% intervals, {rows_note})"
            ),
            "",
            (
                "| metric | candidate | champion | difference | "
                f"{conf}% interval of the difference | verdict |"
            ),
            "|---|---:|---:|---:|---|---|",
        ]
        return lines + [_comparison_row(r) for r in comparison["rows"]]
    lines = [
        f"#### Candidate metrics ({conf}% bootstrap intervals, {rows_note})",
        "",
        f"Champion: {comparison['reason']}.",
        "",
        f"| metric | candidate | {conf}% interval |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {name} | {_fmt(verdict['metrics'][name])} | "
        f"{_interval(verdict['intervals'].get(name))} |"
        for name in m.names(meta["task"])
        if name in verdict["metrics"]
    ]
    return lines


def _slice_rows(meta: Doc, verdict: Doc) -> list[str]:
    keys = list(m.HEADLINE[meta["task"]])
    lines = ["", "#### Slices", ""]
    lines.append("| slice | rows | " + " | ".join(keys) + " |")
    lines.append("|---|---:|" + "---:|" * len(keys))
    for s in verdict["slices"]:
        cells = " | ".join(_fmt(s["metrics"].get(k)) for k in keys)
        mark = "" if s["gated"] else " (not gated)"
        lines.append(f"| {s['slice']}{mark} | {s['rows']} | {cells} |")
    return lines


def summary_markdown(meta: Doc, verdict: Doc) -> str:
    """`summary.md`: the checks, the metrics (against the champion), chart and slices."""
    lines = [f"### {_icon(verdict['passed'])} evaluate: {verdict['summary']}", ""]
    lines += _check_rows(verdict)
    lines.append("")
    lines += _metric_rows(meta, verdict)
    chart = mermaid_chart(meta, verdict)
    if chart:
        lines += ["", chart]
    if verdict["slices"]:
        lines += _slice_rows(meta, verdict)
    lines += [
        "",
        (
            "Plots in `evaluate/report.html`; model card in `evaluate/model_card.md`; "
            "every check in `evaluate/verdict.json`."
        ),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- report.html

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}
.pass{color:#137333}.fail{color:#c5221f;font-weight:bold}
.plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #eee;padding:0.5rem}
figcaption{font-size:0.9rem;color:#555;text-align:center}
"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _report_head(meta: Doc, verdict: Doc) -> list[str]:
    e = html.escape
    passed = verdict["passed"]
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>mlcd evaluation: {e(str(meta['name']))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation of {e(str(meta['name']))}</h1>",
        (
            f'<p class="{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}: '
            f"{e(verdict['summary'])}</p>"
        ),
        (
            f"<p>{e(str(meta['estimator']))} ({e(str(meta['task']))}), "
            f"{verdict['holdout_rows']} held-out rows, fingerprint "
            f"<code>{e(str(meta.get('fingerprint', ''))[:16])}</code>, commit "
            f"<code>{e(str(meta.get('git_sha', ''))[:12])}</code></p>"
        ),
    ]


def _report_tables(meta: Doc, verdict: Doc) -> list[str]:
    e = html.escape
    conf = round(verdict["confidence"] * 100)

    def result(c: Doc) -> str:
        word = "pass" if c["passed"] else "fail"
        return f'<span class="{word}">{word}</span>'

    parts = [
        "<h2>Checks</h2>",
        _table(["check", "result"], [[e(c["line"]), result(c)] for c in verdict["checks"]]),
        f"<h2>Metrics ({conf}% bootstrap intervals)</h2>",
        _table(
            ["metric", "value", "interval"],
            [
                [e(k), _fmt(verdict["metrics"].get(k)), _interval(verdict["intervals"].get(k))]
                for k in m.names(meta["task"])
                if k in verdict["metrics"]
            ],
        ),
    ]
    comparison = verdict["comparison"]
    if comparison["status"] == "compared":
        parts.append(f"<h2>Against champion {e(str(comparison['champion']))}</h2>")
        head = ["metric", "candidate", "champion", "difference", f"{conf}% interval"]
        rows = [
            [
                e(r["metric"]),
                _fmt(r["candidate"]),
                _fmt(r["champion"]),
                _signed(r["difference"]),
                _interval(r["interval"]),
            ]
            for r in comparison["rows"]
        ]
        parts.append(_table(head, rows))
    else:
        parts.append(f"<p>Champion: {e(comparison['reason'])}</p>")
    return parts


def report_html(meta: Doc, verdict: Doc, plots: Mapping[str, bytes]) -> str:
    """`report.html`: the checks, metrics, comparison, slices and the PNG `plots` by name."""
    e = html.escape
    parts = _report_head(meta, verdict) + _report_tables(meta, verdict)
    if verdict["slices"]:
        keys = list(m.HEADLINE[meta["task"]])
        parts.append("<h2>Slices</h2>")
        rows = [
            [e(s["slice"]), str(s["rows"]), *(_fmt(s["metrics"].get(k)) for k in keys)]
            for s in verdict["slices"]
        ]
        parts.append(_table(["slice", "rows", *keys], rows))
    parts.append('<h2>Plots</h2><div class="plots">')
    for name, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        title = name.replace("_", " ")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(title)}" '
            f'width="500" height="400"><figcaption>{e(title)}</figcaption></figure>'
        )
    parts.append("</div></body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- model card


def _front_matter(meta: Doc, verdict: Doc) -> str:
    task = str(meta["task"])
    hf_task = "tabular-classification" if task == "classification" else "tabular-regression"
    results = [
        {
            "type": k,
            "value": round(float(v), 6),
            "name": metric_name(k, title=True),
            "verified": False,
        }
        for k, v in verdict["metrics"].items()
        if k in m.names(task) and v is not None
    ]
    front = {
        "library_name": "sklearn",
        "tags": ["sklearn", "skops", hf_task, "mlcd"],
        "model-index": [
            {
                "name": str(meta["name"]),
                "results": [
                    {
                        "task": {"type": hf_task, "name": hf_task.replace("-", " ").title()},
                        "dataset": {
                            "type": "tabular",
                            "name": f"{meta.get('data', 'data')} (held-out split)",
                            "split": "holdout",
                        },
                        "metrics": results,
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip()


def _card_details(meta: Doc, verdict: Doc) -> list[str]:
    task = str(meta["task"])
    versions = meta.get("versions", {})
    features = meta.get("features", [])
    conf = round(verdict["confidence"] * 100)
    return [
        f"# Model Card for {meta['name']}",
        "",
        f"A scikit-learn {task} model (`{meta['estimator']}`) trained and evaluated by mlcd.",
        "",
        "## Model Details",
        "",
        "### Model Description",
        "",
        f"- **Model type:** `{meta['estimator']}` built by `{meta.get('entrypoint')}`",
        f"- **Task:** {task}, target `{meta['target']}`",
        f"- **Classes:** {meta.get('classes')}" if meta.get("classes") else "- **Classes:** n/a",
        f"- **Source commit:** `{meta.get('git_sha')}`",
        f"- **Fingerprint (data, code, params):** `{meta.get('fingerprint')}`",
        "- **Libraries:** " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "## Uses",
        "",
        "### Direct Use",
        "",
        (
            f"Predicting `{meta['target']}` from the {len(features)} features listed under "
            "Training Data, for rows like those the model was trained on."
        ),
        "",
        "### Out-of-Scope Use",
        "",
        (
            "Rows whose feature values fall outside the training ranges below, or with features "
            "missing or renamed; the model has not been evaluated on them."
        ),
        "",
        "## Bias, Risks, and Limitations",
        "",
        (
            f"The figures below come from {verdict['holdout_rows']} held-out rows of one data "
            f"file; their {conf}% bootstrap intervals show how much they could move on other rows."
        ),
    ]


def _card_training(meta: Doc) -> list[str]:
    task = str(meta["task"])
    lines = [
        "",
        "## How to Get Started with the Model",
        "",
        "```python",
        "import skops.io as sio",
        "",
        'trusted = sio.get_untrusted_types(file="model.skops")  # review this list first',
        'model = sio.load("model.skops", trusted=trusted)',
        "```",
        "",
        "## Training Details",
        "",
        "### Training Data",
        "",
        f"`{meta.get('data')}` (sha256 `{str(meta.get('data_sha256', ''))[:16]}…`), "
        f"{meta.get('rows')} rows; {meta.get('train_rows')} used for training, "
        f"{meta.get('holdout_rows')} held out (seed {meta.get('seed')}, test size "
        f"{meta.get('test_size')}" + (", stratified)." if task == "classification" else ")."),
        "",
        "| feature | dtype | min | max | categories |",
        "|---|---|---:|---:|---|",
    ]
    for f in meta.get("features", []):
        cats = ", ".join(map(str, f.get("categories") or [])) or ""
        lines.append(
            f"| {f['name']} | {f['dtype']} | {_fmt(f.get('min'), 4)} | "
            f"{_fmt(f.get('max'), 4)} | {cats[:80]} |"
        )
    lines += [
        "",
        "### Training Procedure",
        "",
        "#### Training Hyperparameters",
        "",
        f"- params: `{meta.get('params')}`",
        f"- seeded: {', '.join(meta.get('seeded_params') or []) or 'nothing random to seed'}",
        f"- fit time: {meta.get('fit_seconds')} s",
    ]
    return lines


def _card_evaluation(meta: Doc, verdict: Doc) -> list[str]:
    task = str(meta["task"])
    conf = round(verdict["confidence"] * 100)
    lines = [
        "",
        "## Evaluation",
        "",
        "### Testing Data, Factors & Metrics",
        "",
        "#### Testing Data",
        "",
        f"The {verdict['holdout_rows']} held-out rows of the seeded split.",
        "",
        "#### Factors",
        "",
        (
            "Slices: " + ", ".join(sorted({s["feature"] for s in verdict["slices"]})) + "."
            if verdict["slices"]
            else "No slices configured (evaluate.slices)."
        ),
        "",
        "#### Metrics",
        "",
        ", ".join(metric_name(k, title=True) for k in m.names(task)) + f", with {conf}% intervals "
        f"from {verdict['bootstrap_samples']} bootstrap resamples.",
        "",
        "### Results",
        "",
        "| metric | value | interval |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {k} | {_fmt(verdict['metrics'][k])} | {_interval(verdict['intervals'].get(k))} |"
        for k in m.names(task)
        if verdict["metrics"].get(k) is not None
    ]
    lines += [
        "",
        f"Verdict: **{'passed' if verdict['passed'] else 'failed'}** — {verdict['summary']}",
        "",
    ]
    for s in verdict["slices"]:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in s["metrics"].items() if v is not None)
        lines.append(f"- {s['slice']} ({s['rows']} rows): {shown}")
    return lines


def model_card(meta: Doc, verdict: Doc) -> str:
    """A Hugging Face model card: YAML front matter with `model-index`, then the sections."""
    lines = ["---", _front_matter(meta, verdict), "---", ""]
    lines += _card_details(meta, verdict)
    if verdict["slices"]:
        lines.append("Per-slice results are listed under Evaluation; check the small slices.")
    lines += _card_training(meta)
    lines += _card_evaluation(meta, verdict)
    lines += [
        "",
        "## Technical Specifications",
        "",
        "Saved with skops; loading needs these types beyond skops's defaults: "
        + (", ".join(f"`{t}`" for t in meta.get("trusted_types") or []) or "none")
        + ".",
        "",
    ]
    return "\n".join(lines)

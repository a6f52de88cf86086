"""The evaluation's documents: `summary.md` (table + Mermaid chart), `report.html` (PNG plots
from matplotlib, embedded so the page stands alone) and `model_card.md` (Hugging Face layout).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from mlcd import metrics as m
from mlcd.charts import CANDIDATE as _CANDIDATE
from mlcd.charts import CHAMPION as _CHAMPION
from mlcd.presentation import metric_name
from mlcd.presentation import report_number as _fmt

if TYPE_CHECKING:
    from mlcd.evaluation import Scored

_PALETTE = f"{_CANDIDATE}, {_CHAMPION}"
# Mermaid's init directive: the chart's bars and line in the plots' colours
_THEME = '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + _PALETTE + '"}}}}%%'


def _interval(pair: Any) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _icon(passed: bool) -> str:
    return "✅" if passed else "❌"


# ----------------------------------------------------------------------------- summary.md


def mermaid_chart(meta: dict[str, Any], verdict: dict[str, Any]) -> str:
    """A Mermaid `xychart-beta`: candidate as bars, champion as a line (when there is one)."""
    task = meta["task"]
    bounded = ("accuracy", "precision", "recall", "f1", "roc_auc")
    keys = bounded if task == "classification" else ("rmse", "mae")
    cand = verdict["metrics"]
    champ = {r["metric"]: r["champion"] for r in verdict["comparison"]["rows"]}
    if verdict["comparison"]["status"] == "compared" and task == "classification":
        champ |= _champion_extra(verdict)
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


def _champion_extra(verdict: dict[str, Any]) -> dict[str, Any]:
    return dict(verdict.get("champion_metrics") or {})


def summary_markdown(meta: dict[str, Any], verdict: dict[str, Any]) -> str:
    passed = verdict["passed"]
    conf = round(verdict["confidence"] * 100)
    lines = [f"### {_icon(passed)} evaluate: {verdict['summary']}", ""]
    lines += ["| check | value | bound | result |", "|---|---:|---|---|"]
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
    comparison = verdict["comparison"]
    lines.append("")
    rows_note = f"{verdict['holdout_rows']} held-out rows, {verdict['bootstrap_samples']} resamples"
    if comparison["status"] == "compared":
        lines += [
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
        for r in comparison["rows"]:
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
            lines.append(
                f"| {r['metric']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | "
                f"{diff_text} | {_interval(iv)}{noise} | {verdict_cell} |"
            )
    else:
        lines += [
            f"#### Candidate metrics ({conf}% bootstrap intervals, {rows_note})",
            "",
            f"Champion: {comparison['reason']}.",
            "",
            f"| metric | candidate | {conf}% interval |",
            "|---|---:|---|",
        ]
        for name in m.names(meta["task"]):
            if name in verdict["metrics"]:
                lines.append(
                    f"| {name} | {_fmt(verdict['metrics'][name])} | "
                    f"{_interval(verdict['intervals'].get(name))} |"
                )
    chart = mermaid_chart(meta, verdict)
    if chart:
        lines += ["", chart]
    if verdict["slices"]:
        lines += ["", "#### Slices", ""]
        keys = list(m.HEADLINE[meta["task"]])
        lines.append("| slice | rows | " + " | ".join(keys) + " |")
        lines.append("|---|---:|" + "---:|" * len(keys))
        for s in verdict["slices"]:
            cells = " | ".join(_fmt(s["metrics"].get(k)) for k in keys)
            mark = "" if s["gated"] else " (not gated)"
            lines.append(f"| {s['slice']}{mark} | {s['rows']} | {cells} |")
    lines += [
        "",
        (
            "Plots in `evaluate/report.html`; model card in `evaluate/model_card.md`; "
            "every check in `evaluate/verdict.json`."
        ),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _classification_plots(
    folder: Path,
    meta: dict[str, Any],
    candidate: Scored,
    champion: Scored | None,
    champion_version: str | None,
) -> dict[str, Path]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    preds = candidate.predictions
    classes = [str(c) for c in meta.get("classes") or []]
    plots: dict[str, Path] = {}
    truth = preds.truth.astype(np.int64)

    fig = _figure()
    ax = fig.subplots()
    matrix = m.confusion(truth, preds.labels.astype(np.int64), preds.n_classes)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=12)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (held-out rows)")
    plots["confusion_matrix"] = _save(fig, folder / "confusion_matrix.png")

    if preds.scores is None:
        return plots
    models: list[tuple[str, m.Predictions, m.FloatArray, str, str]] = [
        ("candidate", preds, preds.scores, _CANDIDATE, "-")
    ]
    theirs = champion.predictions if champion is not None else None
    if theirs is not None and theirs.scores is not None:
        models.append((f"champion {champion_version}", theirs, theirs.scores, _CHAMPION, "--"))
    positive = preds.n_classes - 1

    fig = _figure()
    ax = fig.subplots()
    for name, _, scores, color, style in models:
        fpr, tpr, _ = roc_curve(truth == positive, scores[:, positive])
        ax.plot(fpr, tpr, color=color, lw=2, ls=style, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve (positive class {classes[positive]})")
    ax.legend(loc="lower right")
    plots["roc"] = _save(fig, folder / "roc.png")

    fig = _figure()
    ax = fig.subplots()
    for name, _, scores, color, style in models:
        precision, recall, _ = precision_recall_curve(truth == positive, scores[:, positive])
        ax.plot(recall, precision, color=color, lw=2, ls=style, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall (positive class {classes[positive]})")
    ax.legend(loc="lower left")
    plots["precision_recall"] = _save(fig, folder / "precision_recall.png")

    fig = _figure()
    ax = fig.subplots()
    for name, p, scores, color, style in models:
        if preds.n_classes == 2:
            hit, confidence = truth == positive, scores[:, positive]
        else:
            hit, confidence = p.labels == truth, scores.max(axis=1)
        observed, predicted = calibration_curve(hit, confidence, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, marker="o", color=color, lw=2, ls=style, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    plots["calibration"] = _save(fig, folder / "calibration.png")
    return plots


def _regression_plots(
    folder: Path, candidate: Scored, champion: Scored | None, champion_version: str | None
) -> dict[str, Path]:
    preds = candidate.predictions
    truth = preds.truth.astype(np.float64)
    predicted = preds.labels.astype(np.float64)
    plots: dict[str, Path] = {}

    fig = _figure()
    ax = fig.subplots()
    ax.scatter(predicted, predicted - truth, s=14, color=_CANDIDATE, alpha=0.8, label="candidate")
    if champion is not None:
        other = champion.predictions.labels.astype(np.float64)
        ax.scatter(
            other,
            other - truth,
            s=14,
            color=_CHAMPION,
            alpha=0.5,
            label=f"champion {champion_version}",
        )
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (predicted - actual)")
    ax.set_title("Residuals (held-out rows)")
    ax.legend(loc="best")
    plots["residuals"] = _save(fig, folder / "residuals.png")

    fig = _figure()
    ax = fig.subplots()
    ax.scatter(truth, predicted, s=14, color=_CANDIDATE, alpha=0.8, label="candidate")
    if champion is not None:
        ax.scatter(
            truth,
            champion.predictions.labels.astype(np.float64),
            s=14,
            color=_CHAMPION,
            alpha=0.5,
            label=f"champion {champion_version}",
        )
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", label="perfect")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted against actual")
    ax.legend(loc="best")
    plots["predicted_vs_actual"] = _save(fig, folder / "predicted_vs_actual.png")
    return plots


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


def report_html(meta: dict[str, Any], verdict: dict[str, Any], plots: dict[str, Path]) -> str:
    e = html.escape
    passed = verdict["passed"]
    conf = round(verdict["confidence"] * 100)
    parts = [
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
        "<h2>Checks</h2>",
        _table(
            ["check", "result"],
            [
                [
                    e(c["line"]),
                    (
                        f'<span class="{"pass" if c["passed"] else "fail"}">'
                        f"{'pass' if c['passed'] else 'fail'}</span>"
                    ),
                ]
                for c in verdict["checks"]
            ],
        ),
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
        parts.append(
            _table(
                ["metric", "candidate", "champion", "difference", f"{conf}% interval"],
                [
                    [
                        e(r["metric"]),
                        _fmt(r["candidate"]),
                        _fmt(r["champion"]),
                        _signed(r["difference"]),
                        _interval(r["interval"]),
                    ]
                    for r in comparison["rows"]
                ],
            )
        )
    else:
        parts.append(f"<p>Champion: {e(comparison['reason'])}</p>")
    if verdict["slices"]:
        keys = list(m.HEADLINE[meta["task"]])
        parts.append("<h2>Slices</h2>")
        parts.append(
            _table(
                ["slice", "rows", *keys],
                [
                    [e(s["slice"]), str(s["rows"]), *(_fmt(s["metrics"].get(k)) for k in keys)]
                    for s in verdict["slices"]
                ],
            )
        )
    parts.append('<h2>Plots</h2><div class="plots">')
    for name, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        title = name.replace("_", " ")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(title)}" '
            f'width="500" height="400"><figcaption>{e(title)}</figcaption></figure>'
        )
    parts.append("</div></body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- model card


def model_card(meta: dict[str, Any], verdict: dict[str, Any]) -> str:
    """A Hugging Face model card: YAML front matter with `model-index`, then the sections."""
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
    versions = meta.get("versions", {})
    features = meta.get("features", [])
    conf = round(verdict["confidence"] * 100)
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
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
    if verdict["slices"]:
        lines.append("Per-slice results are listed under Evaluation; check the small slices.")
    lines += [
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
    for f in features:
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
    for k in m.names(task):
        if verdict["metrics"].get(k) is not None:
            lines.append(
                f"| {k} | {_fmt(verdict['metrics'][k])} | "
                f"{_interval(verdict['intervals'].get(k))} |"
            )
    lines += [
        "",
        f"Verdict: **{'passed' if verdict['passed'] else 'failed'}** — {verdict['summary']}",
        "",
    ]
    for s in verdict["slices"]:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in s["metrics"].items() if v is not None)
        lines.append(f"- {s['slice']} ({s['rows']} rows): {shown}")
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


def write_all(
    folder: Path,
    *,
    meta: dict[str, Any],
    verdict: dict[str, Any],
    candidate: Scored,
    champion: Scored | None,
    champion_version: str | None,
) -> dict[str, Path]:
    """Write summary.md, the plots, report.html and model_card.md; return them by name."""
    if champion is not None:
        verdict["champion_metrics"] = {
            k: m.clean(v) for k, v in m.compute(champion.predictions).items()
        }
    if meta["task"] == "classification":
        plots = _classification_plots(folder, meta, candidate, champion, champion_version)
    else:
        plots = _regression_plots(folder, candidate, champion, champion_version)
    summary = folder / "summary.md"
    summary.write_text(summary_markdown(meta, verdict), "utf-8")
    report = folder / "report.html"
    report.write_text(report_html(meta, verdict, plots), "utf-8")
    card = folder / "model_card.md"
    card.write_text(model_card(meta, verdict), "utf-8")
    out = {"summary": summary, "report": report, "model_card": card}
    out |= {f"plot_{k}": v for k, v in plots.items()}
    return out

"""The evaluation's checks, pure: thresholds, slices, the comparison with the champion,
and `judge`, which turns them into a `Verdict`.

Nothing here reads or writes a file, the registry or the console; the config problems it
finds are `UserInputError`s naming the key.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcd import metrics as m
from mlcd.config import Bound, EvaluateSection, LoadedConfig, SliceSection
from mlcd.config import where as config_where
from mlcd.errors import UserInputError
from mlcd.evaluation.scoring import ChampionScore, Scored
from mlcd.evaluation.verdict import Check, Comparison, ComparisonRow, SliceResult, Verdict

# metrics computed from predict_proba: a label-only classifier (SVC, RidgeClassifier, a
# hard VotingClassifier) has none of them
PROBABILITY_METRICS = ("roc_auc", "log_loss")


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def bound_text(bound: Bound) -> str:
    parts = []
    if bound.min is not None:
        parts.append(f"≥ {bound.min:g}")
    if bound.max is not None:
        parts.append(f"≤ {bound.max:g}")
    return " and ".join(parts)


def meets(value: float, bound: Bound) -> bool:
    if not math.isfinite(value):
        return False
    return (bound.min is None or value >= bound.min) and (bound.max is None or value <= bound.max)


# ----------------------------------------------------------------------------- the config


def check_names(cfg: EvaluateSection, task: str, config_path: Path) -> None:
    """Every metric the config names is one of the task's, and no tolerance is negative."""
    known = m.names(task)
    keys = [f"thresholds.{n}" for n in cfg.thresholds]
    keys += [f"max-regression.{n}" for n in cfg.max_regression]
    for i, sl in enumerate(cfg.slices):
        keys += [f"slices[{i}].thresholds.{n}" for n in sl.thresholds]
    problems = [
        f"evaluate.{key}: unknown metric for {task}"
        for key in keys
        if key.rsplit(".", 1)[-1] not in known
    ]
    for name, tol in cfg.max_regression.items():
        if tol < 0:
            problems.append(f"evaluate.max-regression.{name}: {tol} is negative")
    if problems:
        raise UserInputError(
            f"{config_path}: {len(problems)} problem(s) in evaluate",
            problems=problems,
            hint=f"the {task} metrics are: {', '.join(known)}",
        )


def check_probability_metrics(loaded: LoadedConfig, model: Any, task: str) -> None:
    """A bound on a probability metric of a model without predict_proba is a config error."""
    cfg = loaded.config.evaluate
    if task != "classification" or hasattr(model, "predict_proba"):
        return
    keys: list[tuple[str | int, ...]] = [
        ("evaluate", "thresholds", n) for n in cfg.thresholds if n in PROBABILITY_METRICS
    ]
    keys += [
        ("evaluate", "max-regression", n) for n in cfg.max_regression if n in PROBABILITY_METRICS
    ]
    for i, sl in enumerate(cfg.slices):
        keys += [
            ("evaluate", "slices", i, "thresholds", n)
            for n in sl.thresholds
            if n in PROBABILITY_METRICS
        ]
    if keys:
        raise UserInputError(
            f"{loaded.path}: {len(keys)} bound(s) on a probability metric, but the model "
            f"({type(model).__name__}) has no predict_proba, so it answers with labels only",
            problems=[
                f"{config_where(loaded, key)}: needs predict_proba, which the model lacks"
                for key in keys
            ],
            hint="bound a label metric instead (accuracy, precision, recall, f1), or use an "
            "estimator with predict_proba (e.g. SVC(probability=True))",
        )


# ----------------------------------------------------------------------------- thresholds


def threshold_checks(
    cfg: EvaluateSection, values: dict[str, float], boot: m.Bootstrap
) -> list[Check]:
    checks = []
    for name, bound in cfg.thresholds.items():
        value = values.get(name, math.nan)
        text = bound_text(bound)
        ok = meets(value, bound)
        iv = boot.candidate.get(name)
        interval = f", interval [{fmt(iv.low)}, {fmt(iv.high)}]" if iv else ""
        why = "" if name in values else " (the model has no predict_proba)"
        checks.append(
            Check(
                "threshold",
                name,
                value,
                text,
                passed=ok,
                line=f"{name} {fmt(value)} {'meets' if ok else 'fails'} {text}{interval}{why}",
            )
        )
    return checks


# ----------------------------------------------------------------------------- slices


def slice_masks(frame: pd.DataFrame, sl: SliceSection) -> list[tuple[str, np.ndarray]]:
    column = frame[sl.feature]
    masks: list[tuple[str, np.ndarray]] = []
    if sl.bins is not None:
        edges = sorted(sl.bins)
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        for low, high in itertools.pairwise(edges):
            last = high == edges[-1]
            mask = (values >= low) & ((values <= high) if last else (values < high))
            close = "]" if last else ")"
            masks.append((f"{sl.feature} in [{low:g}, {high:g}{close}", mask))
        return masks
    values = sorted(column.dropna().unique(), key=str)
    masks.extend((f"{sl.feature} = {v}", (column == v).to_numpy()) for v in values)
    return masks


def _slice_check(sl: SliceSection, name: str, result: SliceResult) -> Check:
    bound = sl.thresholds[name]
    value = result.metrics.get(name, math.nan)
    text, label, rows = bound_text(bound), result.label, result.rows
    if not result.gated:
        return Check(
            "slice-threshold",
            name,
            value,
            text,
            passed=True,
            line=f"{name} on {label}: {fmt(value)} (not gated: {rows} rows < "
            f"min-rows {sl.min_rows})",
            extra={"slice": label, "rows": rows, "gated": False},
        )
    ok = meets(value, bound)
    return Check(
        "slice-threshold",
        name,
        value,
        text,
        passed=ok,
        line=f"{name} on {label}: {fmt(value)} {'meets' if ok else 'fails'} {text}"
        + ("" if math.isfinite(value) else " (undefined on this slice)"),
        extra={"slice": label, "rows": rows, "gated": True},
    )


def slices(
    cfg: EvaluateSection, frame: pd.DataFrame, preds: m.Predictions, config_path: Path
) -> tuple[list[SliceResult], list[Check]]:
    """Each configured slice's metrics, and its thresholds as checks."""
    results: list[SliceResult] = []
    checks: list[Check] = []
    for i, sl in enumerate(cfg.slices):
        if sl.feature not in frame.columns:
            raise UserInputError(
                f"{config_path}: evaluate.slices[{i}].feature `{sl.feature}` is not a column "
                "of the held-out data",
                hint=f"columns: {', '.join(map(str, frame.columns[:20]))}",
            )
        if sl.bins is not None and len(sl.bins) < 2:
            raise UserInputError(
                f"{config_path}: evaluate.slices[{i}].bins needs at least two edges"
            )
        for label, mask in slice_masks(frame, sl):
            rows = np.flatnonzero(mask).astype(np.int64)
            gated = len(rows) >= sl.min_rows
            result = SliceResult(sl.feature, label, len(rows), m.compute(preds.take(rows)), gated)
            results.append(result)
            checks += [_slice_check(sl, name, result) for name in sl.thresholds]
    return results, checks


# ----------------------------------------------------------------------------- champion


def _comparison_row(
    name: str, cand: float, champ: float, interval: m.Interval, tol: float | None
) -> ComparisonRow:
    worse_by = (champ - cand) if m.higher_is_better(name) else (cand - champ)
    passed = tol is None or (math.isfinite(worse_by) and worse_by <= tol + 1e-12)
    return ComparisonRow(name, cand, champ, cand - champ, interval, worse_by, tol, passed)


def _comparison_check(row: ComparisonRow, tol: float, version: str, confidence: float) -> Check:
    name, cand, champ, diff = row.metric, row.candidate, row.champion, row.difference
    interval, worse_by = row.interval, row.worse_by
    noise = "inside the noise" if interval.contains(0.0) else "outside the noise"
    iv = f"[{fmt(interval.low)}, {fmt(interval.high)}]"
    if not math.isfinite(worse_by):
        line = f"{name}: undefined for the candidate or champion {version}; cannot compare"
    elif row.passed:
        line = (
            f"{name} {fmt(cand)} vs champion {version} {fmt(champ)}: difference "
            f"{diff:+.4f}, {int(confidence * 100)}% interval {iv} ({noise}); within "
            f"max-regression {tol:g}"
        )
    else:
        line = (
            f"{name} {fmt(cand)} is worse than champion {version} {fmt(champ)} by "
            f"{worse_by:.4f} > max-regression {tol:g}; difference {diff:+.4f}, "
            f"{int(confidence * 100)}% interval {iv} ({noise})"
        )
    extra = {
        "champion": m.clean(champ),
        "champion_version": version,
        "difference": m.clean(diff),
        "interval": interval.as_json(),
        "worse_by": m.clean(worse_by),
        "status": "compared",
    }
    return Check("champion", name, cand, f"worse by ≤ {tol:g}", row.passed, line, extra)


def comparison(
    cfg: EvaluateSection,
    champion: ChampionScore,
    candidate: dict[str, float],
    boot: m.Bootstrap,
    task: str,
) -> tuple[Comparison, list[Check]]:
    """The comparison's rows (gated by evaluate.max-regression or only reported) and checks."""
    version = champion.champion.version if champion.champion else None
    if champion.status != "compared" or version is None:
        check = Check(
            "champion",
            None,
            None,
            "",
            passed=True,
            line=champion.reason,
            extra={"status": champion.status},
        )
        return Comparison(champion.status, champion.reason, version), [check]
    rows = [
        _comparison_row(
            name,
            candidate.get(name, math.nan),
            champion.metrics.get(name, math.nan),
            boot.difference.get(name, m.Interval(math.nan, math.nan)),
            cfg.max_regression.get(name),
        )
        for name in dict.fromkeys([*cfg.max_regression, *m.HEADLINE[task]])
    ]
    checks = [
        _comparison_check(row, tol, version, cfg.confidence)
        for row in rows
        if (tol := row.max_regression) is not None
    ]
    if not checks:
        checks.append(
            Check(
                "champion",
                None,
                None,
                "",
                passed=True,
                line=f"compared with champion {version}; no evaluate.max-regression is set, so "
                "the comparison is reported, not gated",
                extra={"status": "compared"},
            )
        )
    return Comparison(champion.status, champion.reason, version, rows), checks


# ----------------------------------------------------------------------------- the verdict


def _summary(checks: list[Check], values: dict[str, float], task: str) -> str:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f"passed {len(checks)} check{'s' * (len(checks) != 1)}; " + ", ".join(
            f"{k} {fmt(values[k])}" for k in m.HEADLINE[task] if k in values
        )
    return f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(c.line for c in failed[:2])


def _candidate_metrics(values: dict[str, float], preds: m.Predictions) -> dict[str, Any]:
    out: dict[str, Any] = {k: m.clean(v) for k, v in values.items()}
    if preds.task == "classification":
        out["confusion_matrix"] = m.confusion(
            preds.truth.astype(np.int64), preds.labels.astype(np.int64), preds.n_classes
        ).tolist()
    return out


def judge(
    *,
    cfg: EvaluateSection,
    meta: dict[str, Any],
    frame: pd.DataFrame,
    candidate: Scored,
    champion: ChampionScore,
    boot: m.Bootstrap,
    config_path: Path,
) -> Verdict:
    """Every check on the candidate's held-out predictions, and what they add up to."""
    task = str(meta["task"])
    values = m.compute(candidate.predictions)
    checks = threshold_checks(cfg, values, boot)
    slice_results, slice_checks = slices(cfg, frame, candidate.predictions, config_path)
    checks += slice_checks
    compared, champion_checks = comparison(cfg, champion, values, boot, task)
    checks += champion_checks
    if not cfg.thresholds and not slice_checks:
        checks.insert(
            0,
            Check(
                "threshold",
                None,
                None,
                "",
                passed=True,
                line="no thresholds configured (evaluate.thresholds): nothing to meet",
            ),
        )
    return Verdict(
        passed=all(c.passed for c in checks),
        summary=_summary(checks, values, task),
        checks=checks,
        metrics=_candidate_metrics(values, candidate.predictions),
        intervals=dict(boot.candidate),
        confidence=cfg.confidence,
        bootstrap_samples=cfg.bootstrap_samples,
        holdout_rows=len(frame),
        comparison=compared,
        slices=slice_results,
        model={"fingerprint": meta.get("fingerprint"), "sha256": meta.get("model_sha256")},
        champion_metrics=dict(champion.metrics) if champion.scored else None,
    )

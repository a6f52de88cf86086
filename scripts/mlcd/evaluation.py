"""The evaluation gate behind `mlcd evaluate` (the stage module only wires it).

On the held-out rows of `mlcd train`: the task's metrics with bootstrap intervals, per-slice
metrics, thresholds (also per slice), and a paired-bootstrap comparison with the registry's
`champion` on the same rows. Always writes `evaluate/verdict.json` (one entry per check),
`summary.md` (table + Mermaid chart), `report.html` (matplotlib plots) and `model_card.md`,
then registers the candidate in the model registry (unless `--no-register`).
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcd import dataset, evalreport, modelio
from mlcd import metrics as m
from mlcd.config import Bound, EvaluateSection, SliceSection
from mlcd.config import where as config_where
from mlcd.context import Context
from mlcd.contracts import META_FILE, MODEL_FILE, VERDICT_FILE, train_files
from mlcd.errors import UserInputError
from mlcd.evidence import StageOutcome, write_json_atomic
from mlcd.registry import CHAMPION, ModelRegistry, ModelVersion, open_registry

STAGE = "evaluate"


@dataclass
class Check:
    """One line of the verdict."""

    kind: str  # threshold | slice-threshold | champion
    metric: str | None
    value: float | None
    bound: str
    passed: bool
    line: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "value": m.clean(self.value),
            "bound": self.bound,
            "passed": self.passed,
            "line": self.line,
            **self.extra,
        }


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _bound_text(bound: Bound) -> str:
    parts = []
    if bound.min is not None:
        parts.append(f"≥ {bound.min:g}")
    if bound.max is not None:
        parts.append(f"≤ {bound.max:g}")
    return " and ".join(parts)


def _meets(value: float, bound: Bound) -> bool:
    if not math.isfinite(value):
        return False
    return (bound.min is None or value >= bound.min) and (bound.max is None or value <= bound.max)


def _check_names(cfg: EvaluateSection, task: str, config_path: Path) -> None:
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


# metrics computed from predict_proba: a label-only classifier (SVC, RidgeClassifier, a
# hard VotingClassifier) has none of them
PROBABILITY_METRICS = ("roc_auc", "log_loss")


def _check_probability_metrics(ctx: Context, cfg: EvaluateSection, model: Any, task: str) -> None:
    """A bound on a probability metric of a model without predict_proba is a config error."""
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
            f"{ctx.loaded.path}: {len(keys)} bound(s) on a probability metric, but the model "
            f"({type(model).__name__}) has no predict_proba, so it answers with labels only",
            problems=[
                f"{config_where(ctx.loaded, key)}: needs predict_proba, which the model lacks"
                for key in keys
            ],
            hint="bound a label metric instead (accuracy, precision, recall, f1), or use an "
            "estimator with predict_proba (e.g. SVC(probability=True))",
        )


# ----------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Scored:
    """A model's predictions on the holdout, raw (for plots) and encoded (for metrics)."""

    predictions: m.Predictions
    raw_labels: list[Any]


def score(model: Any, features: pd.DataFrame, truth: pd.Series, meta: dict[str, Any]) -> Scored:
    """Predict the held-out rows and encode them for the metrics."""
    task = str(meta["task"])
    try:
        predicted = model.predict(features)
        proba = (
            np.asarray(model.predict_proba(features), dtype=np.float64)
            if task == "classification" and hasattr(model, "predict_proba")
            else None
        )
    except Exception as exc:  # a model that cannot predict its own holdout
        raise UserInputError(
            f"the model could not predict the held-out rows ({type(exc).__name__}: {exc})",
            hint="re-run `mlcd train`; the holdout and the model must come from the same run",
        ) from exc
    if task == "classification":
        classes = list(meta.get("classes") or [])
        model_classes = [str(c) for c in getattr(model, "classes_", classes)]
        try:
            truth_idx = m.encode_labels(list(truth), classes)
            label_idx = m.encode_labels(list(predicted), classes)
        except KeyError as exc:
            raise UserInputError(
                f"the held-out target holds label {exc.args[0]!r}, which is not one of the "
                f"model's classes {classes}"
            ) from exc
        if proba is not None and model_classes != [str(c) for c in classes]:
            order = [model_classes.index(str(c)) for c in classes]
            proba = proba[:, order]
        preds = m.Predictions(task, truth_idx, label_idx, proba, len(classes))
    else:
        preds = m.Predictions(
            task,
            truth.to_numpy(dtype=np.float64),
            np.asarray(predicted, dtype=np.float64),
        )
    return Scored(preds, list(predicted))


# ----------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class SliceResult:
    feature: str
    label: str
    rows: int
    metrics: dict[str, float]
    gated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "slice": self.label,
            "rows": self.rows,
            "gated": self.gated,
            "metrics": {k: m.clean(v) for k, v in self.metrics.items()},
        }


def _slice_masks(frame: pd.DataFrame, sl: SliceSection) -> list[tuple[str, np.ndarray]]:
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


def _slices(
    cfg: EvaluateSection, frame: pd.DataFrame, preds: m.Predictions, config_path: Path
) -> tuple[list[SliceResult], list[Check]]:
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
        for label, mask in _slice_masks(frame, sl):
            rows = np.flatnonzero(mask).astype(np.int64)
            gated = len(rows) >= sl.min_rows
            values = m.compute(preds.take(rows))
            results.append(SliceResult(sl.feature, label, len(rows), values, gated))
            for name, bound in sl.thresholds.items():
                value = values.get(name, math.nan)
                text = _bound_text(bound)
                if not gated:
                    checks.append(
                        Check(
                            "slice-threshold",
                            name,
                            value,
                            text,
                            passed=True,
                            line=f"{name} on {label}: {fmt(value)} (not gated: {len(rows)} rows < "
                            f"min-rows {sl.min_rows})",
                            extra={"slice": label, "rows": len(rows), "gated": False},
                        )
                    )
                    continue
                ok = _meets(value, bound)
                checks.append(
                    Check(
                        "slice-threshold",
                        name,
                        value,
                        text,
                        passed=ok,
                        line=f"{name} on {label}: {fmt(value)} {'meets' if ok else 'fails'} {text}"
                        + ("" if math.isfinite(value) else " (undefined on this slice)"),
                        extra={"slice": label, "rows": len(rows), "gated": True},
                    )
                )
    return results, checks


# ----------------------------------------------------------------------------- champion


@dataclass
class Comparison:
    """The champion and the paired comparison (None fields when there is no champion)."""

    status: str  # compared | none | off | not-comparable
    reason: str
    champion: ModelVersion | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    scored: Scored | None = None


def _load_champion(
    *,
    registry: ModelRegistry,
    champion: ModelVersion,
    frame: pd.DataFrame,
    meta: dict[str, Any],
    workdir: Path,
    root: Path,
    declared: list[str],
) -> tuple[Scored | None, str]:
    cmeta = champion.metadata
    if cmeta.get("task") != meta["task"]:
        return None, f"champion {champion.version} is a {cmeta.get('task')} model"
    names = [str(f["name"]) for f in cmeta.get("features", [])]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        return None, (
            f"champion {champion.version} needs feature(s) the candidate's holdout lacks: "
            f"{', '.join(missing[:5])}"
        )
    if meta["task"] == "classification" and [str(c) for c in cmeta.get("classes") or []] != [
        str(c) for c in meta.get("classes") or []
    ]:
        return None, (
            f"champion {champion.version} has classes {cmeta.get('classes')}, the candidate "
            f"{meta.get('classes')}"
        )
    model = modelio.load_project_model(
        registry.model_file(champion.version, workdir), root, declared
    )
    target = str(meta["target"])
    return score(model, frame[names], frame[target], meta), ""


def _compare(
    *,
    ctx: Context,
    cfg: EvaluateSection,
    frame: pd.DataFrame,
    meta: dict[str, Any],
    registry: ModelRegistry | None,
    workdir: Path,
) -> Comparison:
    if cfg.compare_to == "none" or registry is None:
        return Comparison("off", "comparison with the champion is off (evaluate.compare-to: none)")
    champion = registry.alias(CHAMPION)
    if champion is None:
        return Comparison(
            "none",
            f"no champion yet in the registry ({registry.location}): nothing to compare with, "
            "so the comparison passes",
        )
    ctx.progress(f"scoring champion {champion.version}")
    scored, why = _load_champion(
        registry=registry,
        champion=champion,
        frame=frame,
        meta=meta,
        workdir=workdir,
        root=ctx.loaded.root,
        declared=list(ctx.config.model.trusted_types),
    )
    if scored is None:
        return Comparison(
            "not-comparable", f"{why}: not comparable, so the comparison passes", champion
        )
    return Comparison(
        "compared",
        f"compared with champion {champion.version} on the same {len(frame)} held-out rows",
        champion,
        m.compute(scored.predictions),
        scored=scored,
    )


def _comparison_checks(
    *,
    cfg: EvaluateSection,
    comparison: Comparison,
    candidate: dict[str, float],
    boot: m.Bootstrap,
    task: str,
) -> list[Check]:
    if comparison.status != "compared" or comparison.champion is None:
        return [
            Check(
                "champion",
                None,
                None,
                "",
                passed=True,
                line=comparison.reason,
                extra={"status": comparison.status},
            )
        ]
    version = comparison.champion.version
    checks: list[Check] = []
    shown = list(dict.fromkeys([*cfg.max_regression, *m.HEADLINE[task]]))
    for name in shown:
        cand = candidate.get(name, math.nan)
        champ = comparison.champion_metrics.get(name, math.nan)
        diff = cand - champ
        interval = boot.difference.get(name, m.Interval(math.nan, math.nan))
        worse_by = (champ - cand) if m.higher_is_better(name) else (cand - champ)
        noise = "inside the noise" if interval.contains(0.0) else "outside the noise"
        tol = cfg.max_regression.get(name)
        row = {
            "metric": name,
            "candidate": m.clean(cand),
            "champion": m.clean(champ),
            "difference": m.clean(diff),
            "interval": interval.as_json(),
            "worse_by": m.clean(worse_by),
            "max_regression": tol,
            "gated": tol is not None,
        }
        iv = f"[{fmt(interval.low)}, {fmt(interval.high)}]"
        if tol is None:
            row["passed"] = True
            comparison.rows.append(row)
            continue
        defined = math.isfinite(worse_by)
        ok = defined and worse_by <= tol + 1e-12
        row["passed"] = ok
        comparison.rows.append(row)
        if not defined:
            line = f"{name}: undefined for the candidate or champion {version}; cannot compare"
        elif ok:
            line = (
                f"{name} {fmt(cand)} vs champion {version} {fmt(champ)}: difference "
                f"{diff:+.4f}, {int(cfg.confidence * 100)}% interval {iv} ({noise}); within "
                f"max-regression {tol:g}"
            )
        else:
            line = (
                f"{name} {fmt(cand)} is worse than champion {version} {fmt(champ)} by "
                f"{worse_by:.4f} > max-regression {tol:g}; difference {diff:+.4f}, "
                f"{int(cfg.confidence * 100)}% interval {iv} ({noise})"
            )
        checks.append(
            Check(
                "champion",
                name,
                cand,
                f"worse by ≤ {tol:g}",
                passed=ok,
                line=line,
                extra={
                    "champion": m.clean(champ),
                    "champion_version": version,
                    "difference": m.clean(diff),
                    "interval": interval.as_json(),
                    "worse_by": m.clean(worse_by),
                    "status": "compared",
                },
            )
        )
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
    return checks


# ----------------------------------------------------------------------------- the stage


def _load_train(ctx: Context) -> tuple[dict[str, Any], Path, pd.DataFrame]:
    ctx.bundle.require("train", by=STAGE)
    files = train_files(ctx.bundle)
    model_path, meta_path, holdout_path = files.model, files.meta, files.holdout
    if not meta_path.is_file() or not model_path.is_file():
        raise UserInputError(
            f"{ctx.bundle.root / 'train'} lacks {MODEL_FILE} or {META_FILE}",
            hint="run `mlcd train` first, with the same --out",
        )
    meta = json.loads(meta_path.read_text("utf-8"))
    frame = dataset.read_holdout(holdout_path, meta["features"], str(meta["target"]))
    return meta, model_path, frame


def body(ctx: Context, *, register: bool) -> StageOutcome:
    cfg = ctx.config.evaluate
    meta, model_path, frame = _load_train(ctx)
    task = str(meta["task"])
    _check_names(cfg, task, ctx.loaded.path)
    folder = ctx.bundle.stage_dir(STAGE)
    feature_names = [str(f["name"]) for f in meta["features"]]
    target = str(meta["target"])

    ctx.progress("loading the model")
    model = modelio.load_project_model(model_path, ctx.loaded.root, ctx.config.model.trusted_types)
    _check_probability_metrics(ctx, cfg, model, task)
    candidate = score(model, frame[feature_names], frame[target], meta)
    values = m.compute(candidate.predictions)

    registry = open_registry(ctx.loaded) if (register or cfg.compare_to == "champion") else None
    with tempfile.TemporaryDirectory(prefix="mlcd-champion-") as workdir:
        comparison = _compare(
            ctx=ctx, cfg=cfg, frame=frame, meta=meta, registry=registry, workdir=Path(workdir)
        )
    seed = int(meta.get("seed", 0))
    boot = m.bootstrap(
        candidate.predictions,
        comparison.scored.predictions if comparison.scored else None,
        samples=cfg.bootstrap_samples,
        confidence=cfg.confidence,
        seed=seed,
        progress=ctx.progress,
    )

    checks: list[Check] = []
    for name, bound in cfg.thresholds.items():
        value = values.get(name, math.nan)
        text = _bound_text(bound)
        ok = _meets(value, bound)
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
    slice_results, slice_checks = _slices(cfg, frame, candidate.predictions, ctx.loaded.path)
    checks += slice_checks
    checks += _comparison_checks(
        cfg=cfg, comparison=comparison, candidate=values, boot=boot, task=task
    )
    if not cfg.thresholds and not any(c.kind == "slice-threshold" for c in checks):
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
    passed = all(c.passed for c in checks)
    failed = [c for c in checks if not c.passed]

    result_metrics: dict[str, Any] = {k: m.clean(v) for k, v in values.items()}
    if task == "classification":
        k = candidate.predictions.n_classes
        result_metrics["confusion_matrix"] = m.confusion(
            candidate.predictions.truth.astype(np.int64),
            candidate.predictions.labels.astype(np.int64),
            k,
        ).tolist()
    intervals = {k: v.as_json() for k, v in boot.candidate.items()}
    verdict = {
        "passed": passed,
        "summary": "",
        "checks": [c.as_json() for c in checks],
        "metrics": result_metrics,
        "intervals": intervals,
        "confidence": cfg.confidence,
        "bootstrap_samples": cfg.bootstrap_samples,
        "holdout_rows": len(frame),
        "comparison": {
            "status": comparison.status,
            "reason": comparison.reason,
            "champion": comparison.champion.version if comparison.champion else None,
            "rows": comparison.rows,
        },
        "slices": [s.as_json() for s in slice_results],
        "model": {"fingerprint": meta.get("fingerprint"), "sha256": meta.get("model_sha256")},
    }
    if passed:
        summary = f"passed {len(checks)} check{'s' * (len(checks) != 1)}; " + ", ".join(
            f"{k} {fmt(values[k])}" for k in m.HEADLINE[task] if k in values
        )
    else:
        summary = f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(
            c.line for c in failed[:2]
        )
    verdict["summary"] = summary

    ctx.progress("writing the report")
    reports = evalreport.write_all(
        folder,
        meta=meta,
        verdict=verdict,
        candidate=candidate,
        champion=comparison.scored,
        champion_version=comparison.champion.version if comparison.champion else None,
    )
    write_json_atomic(folder / VERDICT_FILE, verdict)

    registered: dict[str, Any] = {"registered": False, "version": None}
    if register and registry is not None:
        registered = register_candidate(
            registry=registry,
            model_path=model_path,
            meta=meta,
            metrics=result_metrics,
            verdict=verdict,
            folder=folder,
        )
    verdict_path = folder / VERDICT_FILE
    artifacts = {"verdict": ctx.bundle.relative(verdict_path)}
    artifacts |= {k: ctx.bundle.relative(v) for k, v in reports.items()}
    return StageOutcome(
        status="pass" if passed else "fail",
        summary=summary,
        reasons=[("✓ " if c.passed else "✗ ") + c.line for c in checks],
        metrics=result_metrics,
        artifacts=artifacts,
        details={
            "intervals": intervals,
            "comparison": verdict["comparison"],
            "registry": registered,
            "slices": verdict["slices"],
        },
        markdown=(folder / "summary.md").read_text("utf-8"),
    )


def register_candidate(
    *,
    registry: ModelRegistry,
    model_path: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    verdict: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    """Add the evaluated model to the registry (evaluate does; release too, after an
    evaluate --no-register), unless a version from the same data, code and params exists."""
    fingerprint = str(meta.get("fingerprint", ""))
    earlier = registry.find_by_fingerprint(fingerprint) if fingerprint else None
    if earlier is not None:
        return {
            "registered": False,
            "version": earlier.version,
            "reason": f"a model from the same data, code and params is {earlier.version}",
            "registry": registry.location,
        }
    version = registry.register(
        model_file=model_path,
        metadata=meta,
        metrics=metrics,
        verdict=verdict,
        files={
            "model_card.md": folder / "model_card.md",
            VERDICT_FILE: folder / VERDICT_FILE,
        },
    )
    return {"registered": True, "version": version.version, "registry": registry.location}

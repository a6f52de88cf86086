"""The evaluation's PNG plots (matplotlib, imported only here): confusion matrix, ROC,
precision-recall and calibration for a classifier; residuals and predicted against actual
for a regressor. Candidate in blue, champion in orange, as in the summary's chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlcd import metrics as m
from mlcd.charts import CANDIDATE, CHAMPION
from mlcd.evaluation.scoring import Scored

# one curve of a plot: label, predictions, their class scores, colour, line style
Curve = tuple[str, m.Predictions, m.FloatArray, str, str]


def _figure(width: float = 5.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _confusion(path: Path, preds: m.Predictions, classes: list[str]) -> Path:
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
    return _save(fig, path)


def _roc(path: Path, curves: list[Curve], truth: Any, positive: int, classes: list[str]) -> Path:
    from sklearn.metrics import auc, roc_curve

    fig = _figure()
    ax = fig.subplots()
    for name, _, scores, color, style in curves:
        fpr, tpr, _ = roc_curve(truth == positive, scores[:, positive])
        ax.plot(fpr, tpr, color=color, lw=2, ls=style, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve (positive class {classes[positive]})")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _precision_recall(
    path: Path, curves: list[Curve], truth: Any, positive: int, classes: list[str]
) -> Path:
    from sklearn.metrics import precision_recall_curve

    fig = _figure()
    ax = fig.subplots()
    for name, _, scores, color, style in curves:
        precision, recall, _ = precision_recall_curve(truth == positive, scores[:, positive])
        ax.plot(recall, precision, color=color, lw=2, ls=style, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall (positive class {classes[positive]})")
    ax.legend(loc="lower left")
    return _save(fig, path)


def _calibration(path: Path, curves: list[Curve], truth: Any, positive: int, k: int) -> Path:
    from sklearn.calibration import calibration_curve

    fig = _figure()
    ax = fig.subplots()
    for name, p, scores, color, style in curves:
        if k == 2:
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
    return _save(fig, path)


def classification_plots(
    folder: Path,
    meta: dict[str, Any],
    candidate: Scored,
    champion: Scored | None,
    champion_version: str | None,
) -> dict[str, Path]:
    preds = candidate.predictions
    classes = [str(c) for c in meta.get("classes") or []]
    plots = {"confusion_matrix": _confusion(folder / "confusion_matrix.png", preds, classes)}
    if preds.scores is None:
        return plots
    curves: list[Curve] = [("candidate", preds, preds.scores, CANDIDATE, "-")]
    theirs = champion.predictions if champion is not None else None
    if theirs is not None and theirs.scores is not None:
        curves.append((f"champion {champion_version}", theirs, theirs.scores, CHAMPION, "--"))
    truth = preds.truth.astype(np.int64)
    positive = preds.n_classes - 1
    plots["roc"] = _roc(folder / "roc.png", curves, truth, positive, classes)
    plots["precision_recall"] = _precision_recall(
        folder / "precision_recall.png", curves, truth, positive, classes
    )
    plots["calibration"] = _calibration(
        folder / "calibration.png", curves, truth, positive, preds.n_classes
    )
    return plots


def _scatter_champion(ax: Any, x: Any, y: Any, champion_version: str | None) -> None:
    ax.scatter(x, y, s=14, color=CHAMPION, alpha=0.5, label=f"champion {champion_version}")


def regression_plots(
    folder: Path, candidate: Scored, champion: Scored | None, champion_version: str | None
) -> dict[str, Path]:
    preds = candidate.predictions
    truth = preds.truth.astype(np.float64)
    predicted = preds.labels.astype(np.float64)
    other = champion.predictions.labels.astype(np.float64) if champion is not None else None
    plots: dict[str, Path] = {}

    fig = _figure()
    ax = fig.subplots()
    ax.scatter(predicted, predicted - truth, s=14, color=CANDIDATE, alpha=0.8, label="candidate")
    if other is not None:
        _scatter_champion(ax, other, other - truth, champion_version)
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (predicted - actual)")
    ax.set_title("Residuals (held-out rows)")
    ax.legend(loc="best")
    plots["residuals"] = _save(fig, folder / "residuals.png")

    fig = _figure()
    ax = fig.subplots()
    ax.scatter(truth, predicted, s=14, color=CANDIDATE, alpha=0.8, label="candidate")
    if other is not None:
        _scatter_champion(ax, truth, other, champion_version)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", label="perfect")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted against actual")
    ax.legend(loc="best")
    plots["predicted_vs_actual"] = _save(fig, folder / "predicted_vs_actual.png")
    return plots

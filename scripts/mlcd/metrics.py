"""Held-out metrics, their bootstrap intervals and the paired comparison with a champion.

Everything here is plain NumPy on encoded labels, so that one bootstrap resample costs
microseconds and the same inputs give bit-identical numbers. The point values agree with
scikit-learn's functions (tests check that): binary precision/recall/F1 are for the second
class label (sklearn's `pos_label=1` for 0/1 labels), multiclass ones are macro averages,
multiclass ROC AUC is one-vs-rest macro.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
HEADLINE = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def names(task: str) -> tuple[str, ...]:
    return CLASSIFICATION if task == "classification" else REGRESSION


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Predictions:
    """What a model said about the held-out rows, in a form the metrics take.

    Classification: `truth`/`labels` are class indices into `classes`, `scores` the
    probabilities (n by classes) or None. Regression: `truth`/`values` are numbers.
    """

    task: str
    truth: FloatArray | IntArray
    labels: IntArray | FloatArray
    scores: FloatArray | None = None
    n_classes: int = 0

    def take(self, rows: IntArray) -> Predictions:
        return Predictions(
            self.task,
            self.truth[rows],
            self.labels[rows],
            None if self.scores is None else self.scores[rows],
            self.n_classes,
        )

    def __len__(self) -> int:
        return len(self.truth)


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion(truth: IntArray, labels: IntArray, k: int) -> IntArray:
    flat = np.bincount(truth * k + labels, minlength=k * k)
    return flat.reshape(k, k).astype(np.int64)


def rankdata(values: FloatArray) -> FloatArray:
    """Ranks from 1, ties sharing their average rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    average = np.cumsum(counts) - (counts - 1) / 2
    return np.asarray(average[inverse.reshape(-1)], dtype=np.float64)


def _binary_auc(positive: npt.NDArray[np.bool_], score: FloatArray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _classification(p: Predictions) -> dict[str, float]:
    k = p.n_classes
    truth = p.truth.astype(np.int64)
    labels = p.labels.astype(np.int64)
    matrix = confusion(truth, labels, k).astype(np.float64)
    tp = np.diag(matrix)
    precision = _safe_div(tp, matrix.sum(axis=0))
    recall = _safe_div(tp, matrix.sum(axis=1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    out = {"accuracy": float(tp.sum() / matrix.sum())}
    if k == 2:
        out |= {"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1])}
    else:
        present = matrix.sum(axis=1) + matrix.sum(axis=0) > 0
        out |= {
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()),
            "f1": float(f1[present].mean()),
        }
    if p.scores is not None:
        scores = p.scores
        if k == 2:
            out["roc_auc"] = _binary_auc(truth == 1, scores[:, 1])
        else:
            aucs = [_binary_auc(truth == c, scores[:, c]) for c in range(k)]
            out["roc_auc"] = math.nan if any(map(math.isnan, aucs)) else float(np.mean(aucs))
        eps = np.finfo(np.float64).eps
        normalised = scores / scores.sum(axis=1, keepdims=True)
        chosen = np.clip(normalised[np.arange(len(truth)), truth], eps, 1 - eps)
        out["log_loss"] = float(-np.mean(np.log(chosen)))
    return out


def _regression(p: Predictions) -> dict[str, float]:
    truth = p.truth.astype(np.float64)
    error = p.labels.astype(np.float64) - truth
    total = float(np.sum((truth - truth.mean()) ** 2))
    residual = float(np.sum(error**2))
    r2 = (1.0 - residual / total) if total > 0 else (1.0 if residual == 0 else 0.0)
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": r2,
    }


def compute(p: Predictions) -> dict[str, float]:
    """The task's metrics (NaN where undefined, e.g. ROC AUC with one class present)."""
    if len(p) == 0:
        return dict.fromkeys(names(p.task), math.nan)
    return _classification(p) if p.task == "classification" else _regression(p)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_json(self) -> list[float | None]:
        return [clean(self.low), clean(self.high)]


def clean(value: float | None) -> float | None:
    """NaN and infinities become None (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def resamples(n: int, samples: int, seed: int) -> IntArray:
    """Bootstrap row indices: `samples` resamples of `n` rows, seeded."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n), dtype=np.int64)


def _percentiles(values: FloatArray, confidence: float) -> Interval:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high))


@dataclass(frozen=True)
class Bootstrap:
    """Per metric: the candidate's interval and, with a champion, the paired difference."""

    candidate: dict[str, Interval]
    champion: dict[str, Interval]
    difference: dict[str, Interval]


def bootstrap(
    candidate: Predictions,
    champion: Predictions | None,
    *,
    samples: int,
    confidence: float,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> Bootstrap:
    """A paired bootstrap: both models are scored on the same resampled rows each time."""
    rows = resamples(len(candidate), samples, seed)
    keys = names(candidate.task)
    cand = {k: np.full(samples, np.nan) for k in keys}
    champ = {k: np.full(samples, np.nan) for k in keys}
    for b in range(samples):
        if progress is not None and b % 250 == 0:
            progress(f"bootstrap {b}/{samples}")
        for key, value in compute(candidate.take(rows[b])).items():
            cand[key][b] = value
        if champion is not None:
            for key, value in compute(champion.take(rows[b])).items():
                champ[key][b] = value
    intervals = {k: _percentiles(v, confidence) for k, v in cand.items()}
    if champion is None:
        return Bootstrap(intervals, {}, {})
    return Bootstrap(
        intervals,
        {k: _percentiles(v, confidence) for k, v in champ.items()},
        {k: _percentiles(cand[k] - champ[k], confidence) for k in keys},
    )


def encode_labels(values: Sequence[Any], classes: Sequence[Any]) -> IntArray:
    """Class labels → indices into `classes` (compared as strings, so 1 and "1" match)."""
    index = {str(c): i for i, c in enumerate(classes)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        key = str(value)
        if key not in index:
            key = _numeric_key(value, index)
        out[i] = index[key]
    return out


def _numeric_key(value: Any, index: dict[str, int]) -> str:
    """`1.0` read from a CSV matches the class `1`."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise KeyError(value) from exc
    for key in index:
        try:
            if float(key) == number:
                return key
        except ValueError:
            continue
    raise KeyError(value)

"""A model's predictions on the held-out rows, encoded for the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlcd import metrics as m
from mlcd.errors import UserInputError
from mlcd.registry import ModelVersion


@dataclass(frozen=True)
class Scored:
    """A model's predictions on the holdout, raw (for plots) and encoded (for metrics)."""

    predictions: m.Predictions
    raw_labels: list[Any]


@dataclass(frozen=True)
class ChampionScore:
    """What scoring the registry's champion gave (`status` as in `verdict.Comparison`)."""

    status: str  # compared | none | off | not-comparable
    reason: str
    champion: ModelVersion | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    scored: Scored | None = None


def _predict(model: Any, features: pd.DataFrame, task: str) -> tuple[Any, Any]:
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
    return predicted, proba


def _classification(
    model: Any, truth: pd.Series, predicted: Any, proba: Any, meta: dict[str, Any]
) -> m.Predictions:
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
    return m.Predictions("classification", truth_idx, label_idx, proba, len(classes))


def score(model: Any, features: pd.DataFrame, truth: pd.Series, meta: dict[str, Any]) -> Scored:
    """Predict the held-out rows and encode them for the metrics."""
    task = str(meta["task"])
    predicted, proba = _predict(model, features, task)
    if task == "classification":
        preds = _classification(model, truth, predicted, proba, meta)
    else:
        preds = m.Predictions(
            task,
            truth.to_numpy(dtype=np.float64),
            np.asarray(predicted, dtype=np.float64),
        )
    return Scored(preds, list(predicted))

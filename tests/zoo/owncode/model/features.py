"""A transformer of the team's own: it clips each column to the range seen in training."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Values outside [min, max] of the training data are set to the nearest bound."""

    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin

    def fit(self, X: Any, y: Any = None) -> ClipToTrainingRange:
        values = np.asarray(X, dtype=np.float64)
        span = values.max(axis=0) - values.min(axis=0)
        self.low_ = values.min(axis=0) - self.margin * span
        self.high_ = values.max(axis=0) + self.margin * span
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X, dtype=np.float64), self.low_, self.high_)

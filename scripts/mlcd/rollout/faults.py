"""Fault injection for rollout drills: transformers that make a model misbehave on purpose.

Put one first in a pipeline to rehearse what a bad release does to a rollout (the judge
should roll it back) without writing a broken model by hand:

    Pipeline([("fault", FailSome(rate=0.05)), ("scale", StandardScaler()), ("clf", ...)])

They live in mlcd's own package, so every mlcd serving image can load them (skops needs
the class importable where the model is loaded). Both are deterministic per input row, so a
request fails (or is slow) the same way on every arm, which keeps shadow comparisons fair.

Faults of the rollout itself (the deploying process killed at a named step boundary) are
`mlcd.rollout.killpoints`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

_CALLS: dict[int, int] = {}  # calls per instance, in this process


def _row_share(row: Any) -> float:
    """A number in [0, 1) that depends only on the row's values."""
    digest = hashlib.sha256(np.asarray(row, dtype=float).tobytes()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FailSome(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Raises for about `rate` of the rows it sees (the server answers those with 500).

    The first `warmup_calls` calls in a process never fail, so that training, evaluation and
    the image's contract test pass and the release reaches a rollout, where it fails like a
    model that breaks under production traffic.
    """

    def __init__(self, rate: float = 0.05, warmup_calls: int = 20) -> None:
        self.rate = rate
        self.warmup_calls = warmup_calls

    def fit(self, x: Any, y: Any = None) -> FailSome:  # noqa: ARG002 - sklearn's signature
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def fit_transform(self, x: Any, y: Any = None, **_fit: Any) -> Any:
        return self.fit(x, y).transform(x, count=False)

    def transform(self, x: Any, *, count: bool = True) -> Any:
        data = np.asarray(x, dtype=float)
        if count:
            _CALLS[id(self)] = _CALLS.get(id(self), 0) + 1
        if _CALLS.get(id(self), 0) > self.warmup_calls:
            for row in data:
                if _row_share(row) < self.rate:
                    raise RuntimeError("FailSome: injected failure for this row")
        return data


class SlowDown(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Sleeps `seconds` for every call (a slower release)."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def fit(self, x: Any, y: Any = None) -> SlowDown:  # noqa: ARG002 - sklearn's signature
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def transform(self, x: Any) -> Any:
        time.sleep(self.seconds)
        return np.asarray(x, dtype=float)

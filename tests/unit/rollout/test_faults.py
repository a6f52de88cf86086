"""The fault-injection transformers used for rollout drills."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlcd.rollout.faults import FailSome, SlowDown


def test_fail_some_fails_about_its_rate_after_warm_up_and_never_in_fit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = (x[:, 0] > 0).astype(int)
    model = Pipeline(
        [("fault", FailSome(rate=0.05, warmup_calls=3)), ("clf", LogisticRegression())]
    ).fit(x, y)
    for _ in range(3):
        model.predict(x)  # warm-up calls never fail
    failures = 0
    for row in x:
        try:
            model.predict(row.reshape(1, -1))
        except RuntimeError:
            failures += 1
    assert 0.03 < failures / len(x) < 0.07
    with pytest.raises(RuntimeError, match="injected"):
        model.predict(x)  # a batch holding a failing row fails


def test_fail_some_is_deterministic_per_row() -> None:
    fault = FailSome(rate=0.5, warmup_calls=0).fit(np.zeros((1, 2)))
    row = np.array([[1.0, 2.0]])
    outcomes = set()
    for _ in range(5):
        try:
            fault.transform(row)
            outcomes.add("ok")
        except RuntimeError:
            outcomes.add("fail")
    assert len(outcomes) == 1


def test_slow_down_passes_values_through() -> None:
    slow = SlowDown(seconds=0.0).fit(np.ones((2, 2)))
    assert slow.transform([[1, 2]]).tolist() == [[1.0, 2.0]]

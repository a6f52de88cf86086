"""The NumPy metrics agree with scikit-learn's; the bootstrap is seeded and paired."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from mlcd import metrics as m


def _binary(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    p1 = np.clip(truth * 0.4 + rng.random(n) * 0.6, 0.01, 0.99)
    return truth, np.column_stack([1 - p1, p1])


def test_binary_classification_matches_sklearn() -> None:
    truth, proba = _binary()
    labels = proba.argmax(axis=1)
    got = m.compute(m.Predictions("classification", truth, labels, proba, 2))
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(truth, labels))
    assert got["precision"] == pytest.approx(sk.precision_score(truth, labels))
    assert got["recall"] == pytest.approx(sk.recall_score(truth, labels))
    assert got["f1"] == pytest.approx(sk.f1_score(truth, labels))
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, proba[:, 1]))
    assert got["log_loss"] == pytest.approx(sk.log_loss(truth, proba))


def test_multiclass_matches_sklearn_macro() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 300)
    raw = rng.random((300, 3)) + np.eye(3)[truth] * 0.8
    proba = raw / raw.sum(axis=1, keepdims=True)
    labels = proba.argmax(axis=1)
    got = m.compute(m.Predictions("classification", truth, labels, proba, 3))
    assert got["precision"] == pytest.approx(sk.precision_score(truth, labels, average="macro"))
    assert got["recall"] == pytest.approx(sk.recall_score(truth, labels, average="macro"))
    assert got["f1"] == pytest.approx(sk.f1_score(truth, labels, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        sk.roc_auc_score(truth, proba, multi_class="ovr", average="macro")
    )
    assert got["log_loss"] == pytest.approx(sk.log_loss(truth, proba))


def test_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=100)
    predicted = truth + rng.normal(scale=0.3, size=100)
    got = m.compute(m.Predictions("regression", truth, predicted))
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, predicted)))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted))
    assert got["r2"] == pytest.approx(sk.r2_score(truth, predicted))


def test_one_class_makes_auc_undefined() -> None:
    truth = np.zeros(10, dtype=np.int64)
    proba = np.column_stack([np.full(10, 0.7), np.full(10, 0.3)])
    got = m.compute(m.Predictions("classification", truth, truth, proba, 2))
    assert np.isnan(got["roc_auc"])
    assert got["accuracy"] == 1.0
    assert m.clean(got["roc_auc"]) is None


def test_bootstrap_is_seeded_and_paired() -> None:
    truth, proba = _binary()
    cand = m.Predictions("classification", truth, proba.argmax(axis=1), proba, 2)
    a = m.bootstrap(cand, cand, samples=200, confidence=0.95, seed=3)
    b = m.bootstrap(cand, cand, samples=200, confidence=0.95, seed=3)
    assert a == b
    # the same model against itself: every paired difference is exactly zero
    assert a.difference["roc_auc"] == m.Interval(0.0, 0.0)
    iv = a.candidate["accuracy"]
    point = m.compute(cand)["accuracy"]
    assert iv.low < point < iv.high


def test_paired_difference_sees_a_worse_model() -> None:
    truth, proba = _binary()
    good = m.Predictions("classification", truth, proba.argmax(axis=1), proba, 2)
    flat = np.full_like(proba, 0.5)
    rng = np.random.default_rng(5)
    noisy = np.clip(proba + rng.normal(scale=0.4, size=proba.shape), 0.01, 0.99)
    worse = m.Predictions("classification", truth, noisy.argmax(axis=1), noisy, 2)
    boot = m.bootstrap(worse, good, samples=300, confidence=0.95, seed=1)
    assert boot.difference["roc_auc"].high < 0
    assert flat.shape == proba.shape


def test_labels_are_matched_as_text_and_numbers() -> None:
    assert list(m.encode_labels([1, 0, "1", 1.0], [0, 1])) == [1, 0, 1, 1]
    with pytest.raises(KeyError):
        m.encode_labels(["cat"], [0, 1])


def test_rankdata_matches_scipy() -> None:
    from scipy.stats import rankdata

    values = np.array([0.3, 0.1, 0.3, 0.9, 0.1, 0.1, 0.5])
    assert (m.rankdata(values) == rankdata(values)).all()

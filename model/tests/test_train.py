"""Tests of the example model's code (run by `mlcd test`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import build_model  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "train.csv"


def _data() -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(DATA)
    return frame.drop(columns=["diagnosis"]), frame["diagnosis"]


def test_build_model_returns_an_unfitted_classifier() -> None:
    model = build_model()
    assert is_classifier(model)
    features, _ = _data()
    with pytest.raises(NotFittedError):
        model.predict(features.head(1))


def test_params_reach_the_estimator() -> None:
    model = build_model(C=0.25, max_iter=50)
    assert model.named_steps["classify"].C == 0.25
    assert model.named_steps["classify"].max_iter == 50


def test_rejects_a_non_positive_c() -> None:
    with pytest.raises(ValueError, match="C must be positive"):
        build_model(C=0)


def test_fits_and_beats_the_majority_class() -> None:
    features, target = _data()
    model = clone(build_model()).fit(features, target)
    accuracy = float(np.mean(model.predict(features) == target))
    majority = float(target.value_counts(normalize=True).max())
    assert accuracy > majority + 0.2
    probabilities = model.predict_proba(features.head(5))
    assert probabilities.shape == (5, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_data_file_has_the_expected_shape() -> None:
    features, target = _data()
    assert features.shape == (569, 30)
    assert set(target.unique()) == {0, 1}

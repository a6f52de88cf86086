"""Loading models: skops with an explicit trusted list; anything else is refused (exit 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlcd import modelio
from mlcd.errors import GateFailed, UserInputError


class Custom:
    """A class skops does not know: loading it would run this module's code."""

    def predict(self, rows: object) -> object:
        return rows


def _data() -> tuple[np.ndarray, np.ndarray]:
    features = np.random.default_rng(0).random((60, 3))
    return features, (features[:, 0] > 0.5).astype(int)


def test_round_trip_of_a_default_trusted_model(tmp_path: Path) -> None:
    x, y = _data()
    model = LogisticRegression().fit(x, y)
    path = tmp_path / "m.skops"
    assert modelio.save_model(model, path) == []
    loaded = modelio.load_model(path)
    assert (loaded.predict_proba(x) == model.predict_proba(x)).all()


def test_same_model_gives_the_same_bytes(tmp_path: Path) -> None:
    x, y = _data()
    modelio.save_model(LogisticRegression().fit(x, y), tmp_path / "a.skops")
    modelio.save_model(LogisticRegression().fit(x, y), tmp_path / "b.skops")
    assert (tmp_path / "a.skops").read_bytes() == (tmp_path / "b.skops").read_bytes()


def test_listed_extra_types_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    x, y = _data()
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, y)
    path = tmp_path / "m.skops"
    needed = modelio.save_model(model, path)
    assert needed == ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    assert set(needed) <= set(modelio.TRUSTED_TYPES)
    assert (modelio.load_model(path).predict(x) == model.predict(x)).all()


def test_unknown_type_is_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    sio.dump({"model": Custom()}, path)
    with pytest.raises(GateFailed) as caught:
        modelio.load_model(path)
    assert caught.value.exit_code == 1
    assert "untrusted type: tests.unit.test_modelio.Custom" in caught.value.problems
    assert modelio.refused_types(path) == ["tests.unit.test_modelio.Custom"]
    # an explicit extra list lets the caller accept it knowingly
    assert modelio.refused_types(path, ["tests.unit.test_modelio.Custom"]) == []


def test_a_pickle_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    path.write_bytes(b"\x80\x04\x95not a zip")
    with pytest.raises(GateFailed, match="not a readable skops model file"):
        modelio.load_model(path)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError):
        modelio.load_model(tmp_path / "absent.skops")

"""Every estimator shape through `mlcd train`, `mlcd evaluate` and the server, in process.

Classifiers without predict_proba answer with labels only; string, integer and boolean
labels come back as trained ("yes", 3, true); multiclass, regression, a bare estimator,
a Pipeline, TransformedTargetRegressor, VotingClassifier and StackingClassifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcd import cli, modelio
from mlcd.serve.app import App
from mlcd.serve.model import load
from tests.mlprojects import write_project
from tests.zoo import make_data


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLCD_REUSE", raising=False)


def _frame(labels: str) -> pd.DataFrame:
    """Numbers, and a target `diagnosis` of the kind asked for."""
    frame = make_data.frame("nolabels").rename(columns={"bought": "diagnosis"})
    z = frame["income"] / 15_000 + frame["score"]
    if labels == "str":
        frame["diagnosis"] = np.where(frame["diagnosis"] == 1, "yes", "no")
    elif labels == "bool":
        frame["diagnosis"] = frame["diagnosis"] == 1
    elif labels == "multi":
        frame["diagnosis"] = np.select([z > z.quantile(0.66), z > z.quantile(0.33)], [3, 2], 1)
    elif labels == "float":
        frame["diagnosis"] = (z * 10 + frame["age"]).round(3)
    return frame


SHAPES: dict[str, tuple[str, str, str]] = {
    # name: (labels, code, what the answer carries)
    "svc": (
        "int",
        (
            "from sklearn.pipeline import make_pipeline\n"
            "from sklearn.preprocessing import StandardScaler\n"
            "from sklearn.svm import SVC\n"
            "def build_model():\n    return make_pipeline(StandardScaler(), SVC())\n"
        ),
        "labels",
    ),
    "ridge-str": (
        "str",
        (
            "from sklearn.linear_model import RidgeClassifier\n"
            "def build_model():\n    return RidgeClassifier()\n"
        ),
        "labels",
    ),
    "bool-bare": (
        "bool",
        (
            "from sklearn.ensemble import RandomForestClassifier\n"
            "def build_model():\n    return RandomForestClassifier(n_estimators=10, max_depth=4)\n"
        ),
        "proba",
    ),
    "multiclass": (
        "multi",
        (
            "from sklearn.pipeline import make_pipeline\n"
            "from sklearn.preprocessing import StandardScaler\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "def build_model():\n"
            "    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))\n"
        ),
        "proba",
    ),
    "voting-hard": (
        "str",
        (
            "from sklearn.ensemble import VotingClassifier\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.tree import DecisionTreeClassifier\n"
            "from sklearn.naive_bayes import GaussianNB\n"
            "def build_model():\n"
            "    return VotingClassifier([('lr', LogisticRegression(max_iter=1000)),\n"
            "        ('tree', DecisionTreeClassifier(max_depth=3)), ('nb', GaussianNB())])\n"
        ),
        "labels",
    ),
    "stacking": (
        "multi",
        (
            "from sklearn.ensemble import StackingClassifier\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.tree import DecisionTreeClassifier\n"
            "def build_model():\n"
            "    return StackingClassifier([('tree', DecisionTreeClassifier(max_depth=3)),\n"
            "        ('lr', LogisticRegression(max_iter=1000))],\n"
            "        final_estimator=LogisticRegression(max_iter=1000), cv=3)\n"
        ),
        "proba",
    ),
    "ttr": (
        "float",
        (
            "import numpy as np\n"
            "from sklearn.compose import TransformedTargetRegressor\n"
            "from sklearn.linear_model import Ridge\n"
            "def build_model():\n"
            "    return TransformedTargetRegressor(regressor=Ridge(), func=np.log1p,\n"
            "                                      inverse_func=np.expm1)\n"
        ),
        "values",
    ),
}


def _train(tmp_path: Path, shape: str, **model: Any) -> tuple[Path, Path]:
    labels, code, _ = SHAPES[shape]
    frame = _frame(labels)
    task = "regression" if labels == "float" else "classification"
    config = write_project(
        tmp_path / "p",
        task=task,
        frame=frame,
        code=code,
        model=model,
        evaluate={"bootstrap-samples": 100},
    )
    if task == "regression":  # write_project names the regression target `progression`
        frame.rename(columns={"diagnosis": "progression"}).to_csv(
            tmp_path / "p" / "data" / "train.csv", index=False
        )
    out = tmp_path / "out"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    return config, out


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_trains_evaluates_and_serves_as_in_process(tmp_path: Path, shape: str) -> None:
    config, out = _train(tmp_path, shape)
    assert cli.main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    served = load(out / "train", version="1.0.0")
    app = App(served, workers=1, recent_capacity=50)
    app.ready = True
    meta = json.loads((out / "train" / "model.json").read_text())
    holdout = pd.read_csv(out / "train" / "holdout.csv")
    names = [f["name"] for f in meta["features"]]
    rows = holdout[names].head(25)
    estimator = modelio.load_model(out / "train" / "model.skops", meta["trusted_types"])
    # the labels as trained: "yes", 3, true (JSON), through numpy's own conversion
    expected = np.asarray(estimator.predict(rows)).tolist()
    response = app.handle_now(
        "POST", "/predict", json.dumps({"instances": rows.to_numpy().tolist()}).encode()
    )
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    kind = SHAPES[shape][2]
    if kind == "values":  # the server predicts an array, the estimator here a DataFrame
        assert np.allclose(answer["predictions"], expected, rtol=1e-12)
    else:
        assert answer["predictions"] == expected
    if kind == "labels":
        assert answer.get("probabilities") is None
    elif kind == "proba":
        assert np.allclose(answer["probabilities"], estimator.predict_proba(rows))
    truth = holdout[meta["target"]].head(25).tolist()
    if kind != "values":
        # every answer is one of the classes, in the type the training data had
        assert {type(p) for p in answer["predictions"]} <= {type(t) for t in truth}
        assert set(answer["predictions"]) <= set(meta["classes"])
        # the class of each prediction is counted in /metrics (the judge's class counts)
        metrics = app.handle_now("GET", "/metrics", b"").body.decode()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("mlcd_predictions_total{")
        )
        assert counted == len(rows)
        recent = json.loads(app.handle_now("GET", "/v1/recent-predictions?limit=5").body)
        assert recent["predictions"][-1]["predictions"] == answer["predictions"]


def test_a_probability_threshold_on_a_model_without_predict_proba_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _train(tmp_path, "svc")
    text = config.read_text()
    config.write_text(
        text.replace(
            "bootstrap-samples: 100", "bootstrap-samples: 100\n  thresholds: {roc_auc: {min: 0.8}}"
        )
    )
    capsys.readouterr()
    assert cli.main(["evaluate", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "evaluate.thresholds.roc_auc" in err
    assert f"{config}:" in err
    assert "predict_proba" in err
    assert "Traceback" not in err

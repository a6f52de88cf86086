"""Small model projects made in a test's folder: a classifier and a regressor.

Both use data that scikit-learn ships (no download): the breast-cancer table for the
classifier and the diabetes table for the regressor.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

CLASSIFIER_CODE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(C=1.0, max_iter=1000):
    return Pipeline([("scale", StandardScaler()),
                     ("classify", LogisticRegression(C=C, max_iter=max_iter))])
"""

REGRESSOR_CODE = """
from sklearn.compose import make_column_transformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_model(alpha=1.0):
    prepare = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["sex"]),
        (StandardScaler(), ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]),
    )
    return Pipeline([("prepare", prepare), ("regress", Ridge(alpha=alpha))])
"""


def classification_frame(rows: int | None = None) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns={"target": "diagnosis"})
    # a few features are enough and keep the tests fast
    keep = ["mean radius", "mean texture", "mean smoothness", "worst area", "diagnosis"]
    frame = frame[keep]
    return frame.head(rows) if rows else frame


def regression_frame() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.frame.rename(columns={"target": "progression"})
    frame["sex"] = frame["sex"].map({1.0: "f", 2.0: "m"})
    return frame


def write_project(
    folder: Path,
    *,
    task: str = "classification",
    frame: pd.DataFrame | None = None,
    code: str | None = None,
    data_name: str = "data/train.csv",
    evaluate: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    registry: str = ".mlcd-registry",
) -> Path:
    """Write mlcd.yaml, train.py and the data; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    if frame is None:
        frame = classification_frame() if task == "classification" else regression_frame()
    target = "diagnosis" if task == "classification" else "progression"
    data = folder / data_name
    data.parent.mkdir(parents=True, exist_ok=True)
    if data.suffix == ".parquet":
        frame.to_parquet(data, index=False)
    else:
        frame.to_csv(data, index=False)
    if code is None:
        code = CLASSIFIER_CODE if task == "classification" else REGRESSOR_CODE
    (folder / "train.py").write_text(textwrap.dedent(code), "utf-8")
    model_section: dict[str, Any] = {
        "task": task,
        "entrypoint": "train.py:build_model",
        "data": data_name,
        "target": target,
        "params": {},
        "test-size": 0.25,
        "seed": 7,
    }
    model_section |= model or {}
    config = {
        "version": 1,
        "project": f"demo-{task}",
        "model": model_section,
        "evaluate": {"bootstrap-samples": 200, **(evaluate or {})},
        "registry": {"backend": "local", "path": registry},
    }
    path = folder / "mlcd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return path


def result(out: Path, stage: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / stage / "result.json").read_text("utf-8"))
    return data

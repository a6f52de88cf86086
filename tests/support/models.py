"""Model folders as `mlcd train` writes them (docs/internals.md), for serving tests.

`model.skops` (skops.io.dump of a fitted estimator), `model.json` (metadata) and
`holdout.csv` (held-out rows: features in model order, then the target).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _estimator(kind: str, trees: int) -> Any:
    if kind == "logreg":
        return Pipeline(
            [("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=1000))]
        )
    if kind == "forest":
        return RandomForestClassifier(n_estimators=trees, random_state=0)
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=20, random_state=0)
    if kind == "regression":
        return Pipeline([("scale", StandardScaler()), ("regress", LinearRegression())])
    raise ValueError(kind)


def make_model_dir(folder: Path, kind: str = "logreg", *, trees: int = 10, name: str = "") -> Path:
    """Train a small model and write it as `mlcd train` would. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    regression = kind == "regression"
    data = load_diabetes(as_frame=True) if regression else load_breast_cancer(as_frame=True)
    x: pd.DataFrame = data.data
    y = data.target.rename("target")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    model = _estimator(kind, trees).fit(x_train, y_train)
    sio.dump(model, folder / "model.skops")
    untrusted = sio.get_untrusted_types(file=folder / "model.skops")
    features = [
        {
            "name": str(col),
            "dtype": str(x[col].dtype),
            "min": float(x[col].min()),
            "max": float(x[col].max()),
            "categories": None,
        }
        for col in x.columns
    ]
    csv = x.to_csv(index=False).encode()
    meta = {
        "name": name or ("diabetes" if regression else "breast-cancer"),
        "task": "regression" if regression else "classification",
        "target": "target",
        "features": features,
        "classes": None if regression else [int(c) for c in np.unique(y)],
        "params": {},
        "data_sha256": hashlib.sha256(csv).hexdigest(),
        "rows": len(x),
        "seed": 42,
        "test_size": 0.2,
        "git_sha": "unknown",
        "versions": {},
        "fit_seconds": 0.1,
        "fingerprint": hashlib.sha256(f"{kind}{trees}".encode()).hexdigest(),
        "trusted_types": list(untrusted),
    }
    if regression:
        meta["target_range"] = {"min": float(y.min()), "max": float(y.max())}
    (folder / "model.json").write_text(json.dumps(meta, indent=2), "utf-8")
    holdout = x_test.copy()
    holdout["target"] = y_test
    holdout.to_csv(folder / "holdout.csv", index=False)
    return folder


def make_project(
    root: Path, *, project: str, kind: str = "logreg", trees: int = 10, registry: str = ""
) -> Path:
    """A project folder with mlcd.yaml and a bundle (`.mlcd/train`) as `mlcd train` leaves it.

    Returns the config path. The image goes to `registry` (default 127.0.0.1:5000).
    """
    from mlcd.evidence import Bundle, StageResult, utc_now

    root.mkdir(parents=True, exist_ok=True)
    host = registry or "127.0.0.1:5000"
    (root / "train.py").write_text("def build_model():\n    return None\n", "utf-8")
    (root / "data.csv").write_text("a,target\n1,0\n", "utf-8")
    config = root / "mlcd.yaml"
    config.write_text(
        "version: 1\n"
        f"project: {project}\n"
        "model: {task: classification, entrypoint: train.py:build_model, data: data.csv, "
        "target: target}\n"
        f"image: {{name: {host}/{project}, base: local/python:3.11-bookworm}}\n"
        "registry: {backend: local, path: .mlcd-registry}\n",
        "utf-8",
    )
    bundle = Bundle(root / ".mlcd")
    make_model_dir(bundle.stage_dir("train"), kind, trees=trees, name=project)
    bundle.write(
        StageResult(
            stage="train",
            status="pass",
            started=utc_now(),
            duration_s=0.1,
            summary="fixture",
            artifacts={
                "model": "train/model.skops",
                "metadata": "train/model.json",
                "holdout": "train/holdout.csv",
            },
        ),
        "",
    )
    return config

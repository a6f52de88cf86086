"""A mixed-type project as teams write them: named columns, categories with gaps, free text.

The pipeline is a `ColumnTransformer` selecting columns by name: numbers with gaps
(SimpleImputer + StandardScaler), categories with gaps (SimpleImputer + OneHotEncoder
with handle_unknown="ignore"), a TfidfVectorizer on a ticket's text, and a boolean passed
through, then a LogisticRegression. `write_project` writes it as a user's project folder
(mlcd.yaml, model/train.py, data/train.csv) for `mlcd train`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_VOCABULARY = """printer jammed again after update login fails with timeout error screen
frozen invoice missing payment refund request slow network cannot connect vpn password reset
please urgent broken laptop battery drains fast email not syncing calendar"""
WORDS = tuple(_VOCABULARY.split())
PLANS = ("basic", "pro", "team")
REGIONS = ("north", "south", "east", "west", "central")

TRAIN_PY = (Path(__file__).parent / "mixed_train.py").read_text("utf-8")


def frame(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """Deterministic rows: age (gaps), visits, plan (gaps), region, note (text), active."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, rows).round(1)
    age[rng.random(rows) < 0.1] = np.nan
    visits = rng.integers(0, 20, rows)
    plan = rng.choice(PLANS, rows).astype(object)
    plan[rng.random(rows) < 0.1] = None
    region = rng.choice(REGIONS, rows)
    notes = [" ".join(rng.choice(WORDS, rng.integers(4, 10))) for _ in range(rows)]
    active = rng.random(rows) < 0.5
    score = (
        (np.nan_to_num(age, nan=40) - 40) / 12
        + visits / 10
        - 1
        + np.where(plan == "pro", 1.0, 0.0)
        + np.asarray(["urgent" in n or "broken" in n for n in notes], dtype=float)
        + active * 0.5
    )
    label = np.where(score + rng.normal(0, 0.5, rows) > 0.3, "churn", "stay")
    return pd.DataFrame(
        {
            "age": age,
            "visits": visits,
            "plan": plan,
            "region": region,
            "note": notes,
            "active": active,
            "label": label,
        }
    )


def write_project(root: Path, *, project: str = "mixed", image: str = "") -> Path:
    """A project folder for `mlcd train`/`mlcd build`; returns its mlcd.yaml."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "model" / "train.py").write_text(TRAIN_PY, "utf-8")
    frame().to_csv(root / "data" / "train.csv", index=False)
    name = image or f"127.0.0.1:5000/{project}"
    config = root / "mlcd.yaml"
    config.write_text(
        f"version: 1\nproject: {project}\n"
        "model: {task: classification, entrypoint: model/train.py:build_model, "
        "data: data/train.csv, target: label}\n"
        "evaluate: {thresholds: {accuracy: {min: 0.5}}, bootstrap-samples: 100}\n"
        f"image: {{name: {name}, base: local/python:3.11-bookworm}}\n",
        "utf-8",
    )
    return config

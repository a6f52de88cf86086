"""Writes each zoo project's `data.csv` (seeded, so the files never change): `python
tests/zoo/make_data.py`. The CSVs are committed; a test checks they are what this makes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROWS = 400


def _numbers(rng: np.random.Generator, n: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 15_000, n).round(2),
            "visits": rng.poisson(4, n),
            "score": rng.normal(0, 1, n).round(4),
        }
    )


def _risk(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    z = (
        0.04 * (frame["age"] - 50)
        + (frame["income"] - 50_000) / 15_000
        + 0.3 * (frame["visits"] - 4)
        + rng.normal(0, 0.5, len(frame))
    )
    return np.asarray(z)


def columns(rng: np.random.Generator) -> pd.DataFrame:
    """(a) columns selected by name: numbers and a category, string labels."""
    frame = _numbers(rng)
    frame["plan"] = rng.choice(["basic", "plus", "pro"], ROWS)
    z = _risk(frame, rng) + frame["plan"].map({"basic": -1.0, "plus": 0.0, "pro": 1.0})
    frame["churn"] = np.where(z > 0, "yes", "no")
    return frame


def gaps(rng: np.random.Generator) -> pd.DataFrame:
    """(b) numbers and categories with gaps, imputed in the pipeline."""
    frame = _numbers(rng)
    frame["region"] = rng.choice(["north", "south", "east", "west"], ROWS)
    z = _risk(frame, rng)
    for column, share in (("income", 0.1), ("visits", 0.05), ("region", 0.1)):
        holes = rng.random(ROWS) < share
        frame[column] = frame[column].astype(object).where(~holes, None)
    frame["churn"] = (z > 0).astype(int)
    return frame


WORDS = {
    "billing": ["invoice", "charge", "refund", "payment", "card", "price", "bill"],
    "bug": ["crash", "error", "broken", "fails", "exception", "freeze", "bug"],
    "account": ["password", "login", "email", "reset", "locked", "username", "profile"],
}
FILLER = ["please", "help", "my", "the", "app", "today", "again", "urgent", "thanks", "why"]


def text(rng: np.random.Generator) -> pd.DataFrame:
    """(c) a free-text column (every ticket differs) and a priority number; three classes."""
    labels = rng.choice(sorted(WORDS), ROWS)
    texts = []
    for index, label in enumerate(labels):
        words = list(rng.choice(WORDS[label], 3)) + list(rng.choice(FILLER, 4))
        rng.shuffle(words)
        texts.append(" ".join(words) + f" #{index}")
    return pd.DataFrame({"ticket": texts, "priority": rng.integers(1, 5, ROWS), "queue": labels})


def owncode(rng: np.random.Generator) -> pd.DataFrame:
    """(d) numbers for a transformer of the team's own package; string labels."""
    frame = _numbers(rng)
    frame["label"] = np.where(_risk(frame, rng) > 0, "malignant", "benign")
    return frame


def imblearn(rng: np.random.Generator) -> pd.DataFrame:
    """(e) imbalanced classes, integer labels 1, 2, 3 (a third-party estimator)."""
    frame = _numbers(rng)
    z = _risk(frame, rng)
    frame["grade"] = np.select([z > 1.2, z > -0.4], [3, 2], 1)
    return frame


def nolabels(rng: np.random.Generator) -> pd.DataFrame:
    """(f) a classifier without predict_proba; integer labels."""
    frame = _numbers(rng)
    frame["bought"] = (_risk(frame, rng) > 0).astype(int)
    return frame


def boolean(rng: np.random.Generator) -> pd.DataFrame:
    """(g) boolean labels (true/false), a bare estimator."""
    frame = _numbers(rng)
    frame["approved"] = _risk(frame, rng) > 0
    return frame


def dates(rng: np.random.Generator) -> pd.DataFrame:
    """(h) a date column (ISO text in the CSV), turned into numbers in the pipeline."""
    frame = _numbers(rng)
    days = rng.integers(0, 3 * 365, ROWS)
    frame["signup"] = (pd.Timestamp("2023-01-01") + pd.to_timedelta(days, unit="D")).strftime(
        "%Y-%m-%d"
    )
    z = _risk(frame, rng) + (days - 540) / 300
    frame["renewed"] = np.where(z > 0, "yes", "no")
    return frame


PROJECTS = {
    "columns": columns,
    "gaps": gaps,
    "text": text,
    "owncode": owncode,
    "imblearn": imblearn,
    "nolabels": nolabels,
    "boolean": boolean,
    "dates": dates,
}


def frame(name: str) -> pd.DataFrame:
    return PROJECTS[name](np.random.default_rng(sorted(PROJECTS).index(name) + 11))


def csv_text(name: str) -> str:
    text_out: str = frame(name).to_csv(index=False, lineterminator="\n")
    return text_out


def main() -> int:
    for name in sys.argv[1:] or PROJECTS:
        (HERE / name / "data.csv").write_text(csv_text(name), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

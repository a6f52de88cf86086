"""The example model: a scaled logistic regression on the breast-cancer data.

mlcd calls `build_model(**params)` and fits what it returns; this file only describes the
model, it never loads data or fits anything itself.
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(C: float = 1.0, max_iter: int = 1000) -> Pipeline:  # noqa: N803 - sklearn's name
    """Return an UNFITTED pipeline: standardise the 30 features, then logistic regression."""
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=C, max_iter=max_iter)),
        ]
    )

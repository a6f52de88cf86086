"""(d) A pipeline with a transformer class from the team's own package."""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model.features import ClipToTrainingRange


def make_model(C: float = 1.0, margin: float = 0.05) -> Pipeline:
    return Pipeline(
        [
            ("clip", ClipToTrainingRange(margin=margin)),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=C, max_iter=1000)),
        ]
    )

"""(c) A free-text column through TfidfVectorizer; three string classes."""

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(C: float = 5.0) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("ticket", TfidfVectorizer(), "ticket"),  # a string (not a list): one text column
            ("priority", StandardScaler(), ["priority"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(C=C, max_iter=1000))])

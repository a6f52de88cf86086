"""The mixed-type project's model/train.py (tests/support/mixed.py copies it)."""

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_model(c: float = 1.0) -> Pipeline:
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    columns = ColumnTransformer(
        [
            ("numbers", numbers, ["age", "visits"]),
            ("categories", categories, ["plan", "region"]),
            ("text", TfidfVectorizer(), "note"),
            ("flags", "passthrough", ["active"]),
        ]
    )
    return Pipeline([("columns", columns), ("classify", LogisticRegression(C=c, max_iter=1000))])

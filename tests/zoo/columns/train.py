"""(a) A ColumnTransformer that selects its columns by name."""

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_model(C: float = 1.0) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "income", "visits", "score"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(C=C, max_iter=1000))])

"""(h) A date column, turned into a number inside the pipeline."""

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from model.dates import days_since_origin


def build_model(C: float = 1.0) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "income", "visits", "score"]),
            ("signup", make_pipeline(FunctionTransformer(days_since_origin), StandardScaler()),
             ["signup"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(C=C, max_iter=1000))])

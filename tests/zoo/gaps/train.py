"""(b) Numbers and categories with gaps, imputed inside the pipeline."""

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_model(C: float = 1.0) -> Pipeline:
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    region = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="unknown"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    prepare = ColumnTransformer(
        [("numbers", numbers, ["age", "income", "visits", "score"]), ("region", region, ["region"])]
    )
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(C=C, max_iter=1000))])

"""(f) A classifier without predict_proba: the server answers with labels only."""

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def build_model(C: float = 1.0) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("classify", SVC(C=C, kernel="rbf"))])

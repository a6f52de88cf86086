"""(g) Boolean labels (true / false), and a bare estimator (no Pipeline)."""

from sklearn.ensemble import HistGradientBoostingClassifier


def build_model(max_iter: int = 50) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=max_iter, max_depth=3)

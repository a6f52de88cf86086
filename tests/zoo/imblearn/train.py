"""(e) A third-party estimator with a scikit-learn API: imbalanced-learn's balanced forest."""

from imblearn.ensemble import BalancedRandomForestClassifier


def build_model(n_estimators: int = 30, max_depth: int = 6) -> BalancedRandomForestClassifier:
    return BalancedRandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        sampling_strategy="all",
        replacement=True,
        bootstrap=False,
    )

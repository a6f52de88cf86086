"""Write data/train.csv from the breast-cancer dataset that scikit-learn ships (no download).

Run from the model folder: python data/make_data.py
The target column `diagnosis` is 1 for benign and 0 for malignant, as scikit-learn codes it.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_breast_cancer


def main() -> None:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    out = Path(__file__).with_name("train.csv")
    frame.to_csv(out, index=False, float_format="%.6g")
    print(f"wrote {out} ({len(frame)} rows, {frame.shape[1] - 1} features)")


if __name__ == "__main__":
    main()

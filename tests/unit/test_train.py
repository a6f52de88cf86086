"""`mlcd train`: the files it writes, determinism, reuse, and every bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlcd import cli, modelio
from tests.mlprojects import classification_frame, result, write_project


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    # head_sha() reads GITHUB_SHA before it would ask git (no subprocess in unit tests)
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLCD_REUSE", raising=False)


def train(config: Path, out: Path, *extra: str) -> int:
    return cli.main(["train", "--config", str(config), "--out", str(out), *extra])


def test_train_writes_model_metadata_and_holdout(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p")
    out = tmp_path / "out"
    assert train(config, out) == 0
    folder = out / "train"
    meta = json.loads((folder / "model.json").read_text())
    for key in (
        "name",
        "task",
        "target",
        "features",
        "classes",
        "params",
        "data_sha256",
        "rows",
        "seed",
        "test_size",
        "git_sha",
        "versions",
        "fit_seconds",
        "fingerprint",
        "trusted_types",
    ):
        assert key in meta, key
    assert meta["classes"] == [0, 1]
    assert meta["git_sha"] == "a" * 40
    assert [f["name"] for f in meta["features"]] == [
        "mean radius",
        "mean texture",
        "mean smoothness",
        "worst area",
    ]
    radius = meta["features"][0]
    assert radius["dtype"] == "float64"
    assert radius["min"] < radius["max"]
    assert meta["versions"]["scikit-learn"]
    holdout = pd.read_csv(folder / "holdout.csv")
    assert list(holdout.columns) == [*(f["name"] for f in meta["features"]), "diagnosis"]
    assert len(holdout) == meta["holdout_rows"] == 143
    # stratified: both classes in the holdout in about the data's proportion
    assert 0.55 < holdout["diagnosis"].mean() < 0.7
    model = modelio.load_model(folder / "model.skops")
    assert list(model.predict(holdout.drop(columns="diagnosis").head(3))) in (
        [0, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [0, 1, 1],
        [1, 0, 0],
        [1, 0, 1],
        [1, 1, 0],
        [1, 1, 1],
    )
    res = result(out, "train")
    assert res["status"] == "pass"
    assert res["artifacts"] == {
        "model": "train/model.skops",
        "metadata": "train/model.json",
        "holdout": "train/holdout.csv",
    }


def test_same_inputs_give_the_same_model_and_fingerprint(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p")
    assert train(config, tmp_path / "a") == 0
    assert train(config, tmp_path / "b") == 0
    a = json.loads((tmp_path / "a/train/model.json").read_text())
    b = json.loads((tmp_path / "b/train/model.json").read_text())
    assert a["fingerprint"] == b["fingerprint"]
    assert a["model_sha256"] == b["model_sha256"]
    assert (tmp_path / "a/train/holdout.csv").read_bytes() == (
        tmp_path / "b/train/holdout.csv"
    ).read_bytes()


def test_params_change_the_fingerprint(tmp_path: Path) -> None:
    assert train(write_project(tmp_path / "p"), tmp_path / "a") == 0
    config = write_project(tmp_path / "q", model={"params": {"C": 0.5}})
    assert train(config, tmp_path / "b") == 0
    a = json.loads((tmp_path / "a/train/model.json").read_text())
    b = json.loads((tmp_path / "b/train/model.json").read_text())
    assert a["fingerprint"] != b["fingerprint"]
    assert b["params"] == {"C": 0.5}


def test_random_state_is_seeded(tmp_path: Path) -> None:
    code = """
    from sklearn.ensemble import RandomForestClassifier

    def build_model():
        return RandomForestClassifier(n_estimators=5)
    """
    config = write_project(tmp_path / "p", code=code)
    assert train(config, tmp_path / "a") == 0
    assert train(config, tmp_path / "b") == 0
    meta = json.loads((tmp_path / "a/train/model.json").read_text())
    assert meta["seeded_params"] == ["random_state"]
    assert meta["trusted_types"] == ["sklearn.tree._tree.Tree"]
    # tree arrays carry padding bytes, so the files may differ; the predictions may not
    holdout = pd.read_csv(tmp_path / "a/train/holdout.csv").drop(columns="diagnosis")
    a = modelio.load_model(tmp_path / "a/train/model.skops").predict_proba(holdout)
    b = modelio.load_model(tmp_path / "b/train/model.skops").predict_proba(holdout)
    assert (a == b).all()


def test_parquet_data(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", data_name="data/train.parquet")
    assert train(config, tmp_path / "out") == 0
    assert json.loads((tmp_path / "out/train/model.json").read_text())["rows"] == 569


def test_reuse_skips_the_fit_when_the_registry_has_the_fingerprint(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p")
    out = tmp_path / "out"
    assert train(config, out) == 0
    # nothing registered yet: --reuse fits
    assert train(config, out, "--reuse") == 0
    assert result(out, "train")["details"]["reused_from"] is None
    assert cli.main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    assert train(config, tmp_path / "again", "--reuse") == 0
    res = result(tmp_path / "again", "train")
    assert res["details"]["reused_from"] == "v1"
    assert "no fit" in res["summary"]
    assert (tmp_path / "again/train/model.skops").read_bytes() == (
        out / "train/model.skops"
    ).read_bytes()
    assert (tmp_path / "again/train/holdout.csv").is_file()


# ----------------------------------------------------------------------------- bad input


def _fails_with(capsys: pytest.CaptureFixture[str], code: int, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err
    return err


def test_missing_target_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = classification_frame().rename(columns={"diagnosis": "diagnosys"})
    config = write_project(tmp_path / "p", frame=frame)
    rc = train(config, tmp_path / "out")
    _fails_with(
        capsys, 2, rc, "model.target", "`diagnosis`", "train.csv", "did you mean `diagnosys`"
    )
    assert result(tmp_path / "out", "train")["status"] == "error"


def test_empty_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p")
    (tmp_path / "p/data/train.csv").write_text("")
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "model.data", "train.csv", "empty")


def test_header_only_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p")
    (tmp_path / "p/data/train.csv").write_text("a,b,diagnosis\n")
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "train.csv", "no rows")


def test_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p")
    (tmp_path / "p/data/train.csv").unlink()
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "model.data", "does not exist")


def test_text_in_a_numeric_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = classification_frame().astype({"mean texture": object})
    frame.loc[9, "mean texture"] = "n/a?"
    config = write_project(tmp_path / "p", frame=frame)
    err = _fails_with(
        capsys, 2, train(config, tmp_path / "out"), "column `mean texture`", "'n/a?'", "line 11"
    )
    assert "numeric" in err


def test_all_null_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = classification_frame()
    frame["empty"] = None
    config = write_project(tmp_path / "p", frame=frame)
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "column `empty`", "null")


def test_target_with_one_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = classification_frame()
    frame["diagnosis"] = 1
    config = write_project(tmp_path / "p", frame=frame)
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "only one class")


def test_entrypoint_file_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", model={"entrypoint": "nothere.py:build_model"})
    _fails_with(
        capsys,
        2,
        train(config, tmp_path / "out"),
        "model.entrypoint",
        "nothere.py",
        "does not exist",
    )


def test_entrypoint_function_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", model={"entrypoint": "train.py:make_model"})
    _fails_with(
        capsys,
        2,
        train(config, tmp_path / "out"),
        "model.entrypoint",
        "no function `make_model`",
        "build_model",
    )


def test_entrypoint_module_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", model={"entrypoint": "nopkg.models:build"})
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "model.entrypoint", "nopkg")


def test_entrypoint_as_module(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", model={"entrypoint": "train:build_model"})
    assert train(config, tmp_path / "out") == 0


def test_entrypoint_returns_no_estimator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "def build_model():\n    return {'model': 'logistic'}\n"
    config = write_project(tmp_path / "p", code=code)
    _fails_with(
        capsys,
        2,
        train(config, tmp_path / "out"),
        "model.entrypoint",
        "returned a dict",
        "not a scikit-learn estimator",
    )


def test_entrypoint_returns_a_regressor_for_classification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "from sklearn.linear_model import Ridge\n\ndef build_model():\n    return Ridge()\n"
    config = write_project(tmp_path / "p", code=code)
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "not a classifier")


def test_entrypoint_rejects_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", model={"params": {"gamma": 3}})
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "model.params", "gamma")


def test_entrypoint_raises_on_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", code="raise RuntimeError('broken on purpose')\n")
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "RuntimeError", "broken on purpose")


def test_fit_failure_is_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = classification_frame()
    frame["colour"] = ["red", "blue"] * 284 + ["red"]
    config = write_project(tmp_path / "p", frame=frame)
    _fails_with(capsys, 2, train(config, tmp_path / "out"), "fitting", "model.data")


def test_a_class_of_the_project_is_trusted_and_one_of_another_package_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = """
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    class Doubler(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X * 2

    def build_model():
        return make_pipeline(Doubler(), LogisticRegression(max_iter=1000))
    """
    config = write_project(tmp_path / "p", code=code)
    assert train(config, tmp_path / "out") == 0
    meta = json.loads((tmp_path / "out/train/model.json").read_text())
    assert meta["project_types"] == ["train.Doubler"]
    assert [m["path"] for m in meta["project_modules"]] == ["train.py"]
    # a class from an installed package that is not scikit-learn's: refused until declared
    other = """
    from imblearn.ensemble import BalancedRandomForestClassifier

    def build_model():
        return BalancedRandomForestClassifier(n_estimators=3, sampling_strategy="all",
                                              replacement=True, bootstrap=False)
    """
    config = write_project(tmp_path / "q", code=other)
    _fails_with(
        capsys,
        1,
        train(config, tmp_path / "out2"),
        "untrusted type: imblearn.ensemble._forest.BalancedRandomForestClassifier",
        "model.trusted-types",
    )


TOKEN = "ghp_" + "Zq8w" * 9  # a GitHub token's shape


@pytest.mark.parametrize(
    "params",
    [
        {"token": TOKEN},  # rejected by build_model(): its repr is in the message
        {"C": 1.0, "hub_password": "hunter2-correct-horse"},  # by its name, any shape
    ],
)
def test_a_secret_in_params_is_masked_in_the_error_and_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], params: dict[str, object]
) -> None:
    config = write_project(tmp_path / "p", model={"params": params})
    out = tmp_path / "out"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 2
    secret = next(v for k, v in params.items() if k != "C")
    assert isinstance(secret, str)
    err = capsys.readouterr().err
    assert "rejected model.params" in err
    assert secret not in err
    assert "****" in err
    written = (out / "train" / "result.json").read_text("utf-8")
    assert secret not in written
    assert "****" in written


def test_a_secret_shaped_param_is_masked_in_the_model_metadata(tmp_path: Path) -> None:
    code = (
        "from sklearn.linear_model import LogisticRegression\n\n\n"
        "def build_model(note=''):\n    return LogisticRegression()\n"
    )
    config = write_project(tmp_path / "p", code=code, model={"params": {"note": TOKEN}})
    out = tmp_path / "out"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    for name in ("model.json", "result.json", "summary.md"):
        text = (out / "train" / name).read_text("utf-8")
        assert TOKEN not in text, name
    assert json.loads((out / "train" / "model.json").read_text())["params"] == {"note": "ghp_****"}

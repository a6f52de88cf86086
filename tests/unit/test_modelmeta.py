"""The typed model.json (mlcd.modelmeta): train's writer round-trips through the type,
from_dict names the bad key, and files written by earlier mlcd versions still read."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlcd import cli, dataset, typedrows
from mlcd.errors import UserInputError
from mlcd.modelmeta import SCHEMA_VERSION, FeatureSpec, ModelMeta
from mlcd.serve.model import ServedModel, load
from mlcd.stages import build
from tests.support import mixed

LEGACY = Path(__file__).parent.parent / "support" / "legacy_v1"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "e" * 40)  # head_sha() without git
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLCD_REUSE", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mlcd train` on the mixed project (numbers, integers, categories, text, booleans)."""
    root = tmp_path_factory.mktemp("modelmeta")
    config = mixed.write_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUB_SHA", "e" * 40)
        patch.delenv("MLCD_REGISTRY_PATH", raising=False)
        patch.delenv("MLCD_REUSE", raising=False)
        assert cli.main(["train", "--config", str(config), "--out", str(root / ".mlcd")]) == 0
    return root / ".mlcd" / "train"


def _raw(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "model.json").read_text("utf-8"))
    return data


# ----------------------------------------------------------------------------- round trip


def test_trains_file_round_trips_through_the_type(trained: Path) -> None:
    raw = _raw(trained)
    meta = ModelMeta.from_dict(raw)
    # the writer writes exactly the type's JSON form: nothing lost, nothing added
    assert meta.to_dict() == raw
    assert raw["schema_version"] == SCHEMA_VERSION
    again = ModelMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert meta.extra == {}
    assert all(f.extra == {} for f in meta.features)
    assert {f.name: f.kind for f in meta.features} == {
        "age": "number",
        "visits": "integer",
        "plan": "category",
        "region": "category",
        "note": "text",
        "active": "boolean",
    }
    assert meta.input is not None
    assert meta.input.format == "dataframe"
    assert meta.task == "classification"
    assert meta.target == "label"
    assert meta.git_sha == "e" * 40


def test_keys_this_version_does_not_know_survive_a_round_trip() -> None:
    raw = {
        "task": "regression",
        "features": [{"name": "x", "kind": "number", "unit": "cm"}],
        "target_range": {"min": 0.0, "max": 1.0},
    }
    meta = ModelMeta.from_dict(raw)
    assert meta.extra == {"target_range": {"min": 0.0, "max": 1.0}}
    assert meta.features[0].extra == {"unit": "cm"}
    out = meta.to_dict()
    assert out["target_range"] == raw["target_range"]
    assert out["features"][0]["unit"] == "cm"
    assert ModelMeta.from_dict(out) == meta


# ----------------------------------------------------------------------------- validation

_GOOD: dict[str, Any] = {
    "name": "m",
    "task": "classification",
    "target": "y",
    "features": [
        {"name": "a", "dtype": "float64", "kind": "number"},
        {"name": "b", "dtype": "object", "kind": "category", "categories": ["x", "y"]},
    ],
    "input": {"format": "dataframe"},
    "classes": [0, 1],
    "trusted_types": [],
    "project_modules": [{"module": "m.f", "path": "m/f.py", "sha256": "0" * 64}],
}


def _bad(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_GOOD)
    node: Any = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return raw


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("task", "clustering", ["`task`", "classification or regression", "'clustering'"]),
        ("task", _DROP, ["`task`", "None"]),
        ("features", [], ["`features`", "non-empty list"]),
        ("features.1.kind", "colour", ["`features[1].kind`", "'colour'", "number, integer"]),
        ("features.0.name", 3, ["`features[0]`", "string `name`"]),
        ("features.1.name", "a", ["`features`", "not unique (a)"]),
        ("features.0.min", "low", ["`features[0].min`", "a number", "'low'"]),
        ("features.0.nullable", "yes", ["`features[0].nullable`", "true or false"]),
        ("features.1.categories", "x,y", ["`features[1].categories`", "a list"]),
        ("input.format", "tensor", ["`input.format`", "array or dataframe", "'tensor'"]),
        ("input.format", "array", ["`input.format`", "every feature to be a number"]),
        ("input", [1], ["`input`", "an object"]),
        ("trusted_types", ["ok", 3], ["`trusted_types`", "list of strings"]),
        ("project_modules.0.sha256", _DROP, ["`project_modules[0].sha256`", "missing"]),
        ("rows", "ten", ["`rows`", "an integer", "'ten'"]),
        ("rows", True, ["`rows`", "an integer", "true"]),
        ("name", 7, ["`name`", "a string"]),
        ("schema_version", SCHEMA_VERSION + 1, ["`schema_version`", "newer mlcd"]),
        ("schema_version", "2", ["`schema_version`", "an integer"]),
    ],
)
def test_from_dict_names_the_bad_key(path: str, value: Any, words: list[str]) -> None:
    ModelMeta.from_dict(copy.deepcopy(_GOOD))  # the good one reads
    with pytest.raises(UserInputError) as info:
        ModelMeta.from_dict(_bad(path, value), "train/model.json")
    message = info.value.message
    assert message.startswith("train/model.json: "), message
    for word in words:
        assert word in message, (word, message)
    assert info.value.exit_code == 2


def test_a_file_that_is_not_an_object_or_not_json_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="must be a JSON object"):
        ModelMeta.from_dict([1, 2], "x/model.json")
    path = tmp_path / "model.json"
    path.write_text("{not json", "utf-8")
    with pytest.raises(UserInputError, match="unreadable model metadata"):
        ModelMeta.load(path)
    with pytest.raises(UserInputError, match="does not exist"):
        ModelMeta.load(tmp_path / "absent.json")


def test_the_server_refuses_a_bad_file_naming_the_key(tmp_path: Path) -> None:
    shutil.copytree(LEGACY, tmp_path / "m")
    raw = _raw(tmp_path / "m")
    raw["features"][3]["kind"] = "colour"
    (tmp_path / "m" / "model.json").write_text(json.dumps(raw), "utf-8")
    with pytest.raises(UserInputError) as info:
        load(tmp_path / "m")
    assert "model.json: `features[3].kind` 'colour' is not one of" in info.value.message


# ----------------------------------------------------------------------------- legacy files


def _legacy_pipeline() -> Pipeline:
    return Pipeline(
        [
            (
                "cols",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "zip"])],
                    remainder="passthrough",
                ),
            ),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )


def test_a_file_written_before_kind_and_input_reads(tmp_path: Path) -> None:
    """tests/support/legacy_v1/model.json was written by the writer of commit 6b52631
    (dataset.feature_schema and train's keys before `kind`, `input`, `accepts_null`,
    `missing` and `schema_version` existed); the type reads it as version 1."""
    raw = _raw(LEGACY)
    assert "schema_version" not in raw
    assert "input" not in raw
    assert all("kind" not in f for f in raw["features"])
    meta = ModelMeta.from_dict(raw)
    assert {f.name: f.kind for f in meta.features} == {
        "age": "integer",
        "income": "number",
        "member": "boolean",
        "plan": "category",
        "zip": "category",
    }
    assert meta.input is None
    assert meta.input_format is None
    assert all(f.accepts_null is None for f in meta.features)
    assert all(f.missing is None for f in meta.features)
    # written again, it is the current schema, and reads back the same
    upgraded = meta.to_dict()
    assert upgraded["schema_version"] == SCHEMA_VERSION
    assert [f["kind"] for f in upgraded["features"]] == [f.kind for f in meta.features]
    assert ModelMeta.from_dict(upgraded) == meta
    # build: a string column and no `input`, so the image gets pandas
    assert build.needs_dataframe(meta)


def test_the_server_serves_a_legacy_file_and_the_typed_rows_agree(tmp_path: Path) -> None:
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder)
    train = pd.read_csv(folder / "train.csv", dtype={"plan": str, "zip": str})
    x = train.drop(columns="churn")
    pipe = _legacy_pipeline().fit(x, train["churn"])
    sio.dump(pipe, folder / "model.skops")
    raw = _raw(folder)
    raw["trusted_types"] = sio.get_untrusted_types(file=folder / "model.skops")
    (folder / "model.json").write_text(json.dumps(raw, indent=2), "utf-8")

    model = load(folder)
    assert [f.kind for f in model.features] == [
        "integer",
        "number",
        "boolean",
        "category",
        "category",
    ]
    assert model.input_format == "dataframe"
    # the held-out rows as evaluate reads them and as the typed rows send them
    features = model.spec.feature_dicts()
    frame = dataset.read_holdout(folder / "holdout.csv", features, "churn")
    assert frame["zip"].map(type).eq(str).all()  # codes keep their leading zero
    records = typedrows.holdout_records(folder / "holdout.csv", features, "churn")
    assert records[0]["zip"].startswith("0")
    rows = np.asarray([[r[n] for n in model.feature_names] for r in records], dtype=object)
    served = model.predict(rows).predictions
    in_process = pipe.predict(frame[model.feature_names]).tolist()
    assert served == in_process


def test_reuse_of_a_version_registered_by_an_earlier_mlcd(tmp_path: Path) -> None:
    from tests.mlprojects import result, write_project

    config = write_project(tmp_path / "p")
    out = tmp_path / "out"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert cli.main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    # make the registered v1 look as an mlcd before `kind` registered it
    records = list(tmp_path.glob("p/**/versions/v1/record.json"))
    assert len(records) == 1, records
    record = json.loads(records[0].read_text("utf-8"))
    old = record["metadata"]
    for key in ("schema_version", "input", "project_types", "declared_types", "project_modules"):
        old.pop(key, None)
    for feature in old["features"]:
        for key in ("kind", "missing", "accepts_null"):
            feature.pop(key, None)
    records[0].chmod(0o644)
    records[0].write_text(json.dumps(record), "utf-8")

    again = tmp_path / "again"
    assert cli.main(["train", "--config", str(config), "--out", str(again), "--reuse"]) == 0
    assert result(again, "train")["details"]["reused_from"] == "v1"
    written = _raw(again / "train")
    assert written["schema_version"] == SCHEMA_VERSION
    assert {f["kind"] for f in written["features"]} == {"number"}
    assert written["reused_from"] == "v1"
    assert cli.main(["evaluate", "--config", str(config), "--out", str(again)]) == 0


def test_a_served_model_can_be_built_from_the_type(trained: Path) -> None:
    meta = ModelMeta.load(trained / "model.json")
    estimator = sio.load(trained / "model.skops", trusted=meta.trusted_types)
    served = ServedModel(estimator, meta)
    assert served.feature_names == meta.feature_names
    assert served.spec == meta
    assert isinstance(served.spec.features[0], FeatureSpec)

"""The MLflow registry backend's and tracking's pure parts: the MLmodel file, the signature
and input example from model.json, configuration and the adapter's address checks. The
REST calls themselves are tested against a real `mlflow server` (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlcd.config import load_config
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.registry import open_registry
from mlcd.registry.mlflow import MLflowRegistry, input_example, mlmodel, signature
from mlcd.tools.mlflow import MLflow, MLflowApiError, tracking_uri
from mlcd.tracking import interval_metrics
from tests.mlprojects import write_project

META = {
    "task": "classification",
    "classes": ["churn", "stay"],
    "versions": {"sklearn": "1.9.1"},
    "features": [
        {"name": "age", "kind": "number", "min": 18.5},
        {"name": "visits", "kind": "integer", "min": 0},
        {"name": "plan", "kind": "category", "categories": ["basic", "pro"]},
        {"name": "note", "kind": "text"},
        {"name": "active", "kind": "boolean"},
        {"name": "since", "kind": "datetime"},
    ],
}


def test_signature_and_example_follow_model_json() -> None:
    sig = signature(META)
    inputs = json.loads(sig["inputs"])
    assert [(c["name"], c["type"]) for c in inputs] == [
        ("age", "double"),
        ("visits", "long"),
        ("plan", "string"),
        ("note", "string"),
        ("active", "boolean"),
        ("since", "datetime"),
    ]
    assert json.loads(sig["outputs"]) == [{"type": "string", "required": True}]
    regression = signature({"task": "regression", "features": META["features"][:1]})
    assert json.loads(regression["outputs"])[0]["type"] == "double"
    example = input_example(META)
    assert example["columns"] == [f["name"] for f in META["features"]]
    assert example["data"] == [[18.5, 0, "basic", "text", False, "2024-01-01"]]


def test_the_mlmodel_file_names_mlcds_flavour_and_no_pickle() -> None:
    doc = yaml.safe_load(mlmodel(META, "run123"))
    assert doc["run_id"] == "run123"
    assert doc["flavors"]["mlcd"]["model_file"] == "model.skops"
    assert doc["flavors"]["mlcd"]["serialization_format"] == "skops"
    assert "python_function" not in doc["flavors"]  # nothing that would unpickle
    assert doc["saved_input_example_info"]["artifact_path"] == "input_example.json"
    assert doc["signature"] == signature(META)


def test_intervals_become_two_metrics_each() -> None:
    got = interval_metrics({"accuracy": [0.9, 0.95], "roc_auc": [None, 0.99], "x": "bad"})
    assert got == {"accuracy_ci_low": 0.9, "accuracy_ci_high": 0.95, "roc_auc_ci_high": 0.99}


def test_the_backend_needs_a_tracking_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write_project(tmp_path / "p")
    doc = yaml.safe_load(config.read_text())
    doc["registry"] = {"backend": "mlflow"}
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserInputError, match="no tracking server is named"):
        open_registry(load_config(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999/")
    opened = open_registry(load_config(config))
    assert isinstance(opened, MLflowRegistry)
    assert opened.location.endswith("at http://127.0.0.1:5999")
    assert opened.name == load_config(config).config.project


def test_uris_and_credentials_come_from_mlflows_variables() -> None:
    env = {
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com/",
        "MLFLOW_TRACKING_USERNAME": "ci",
        "MLFLOW_TRACKING_PASSWORD": "s3cret-pass",
        "MLFLOW_TRACKING_INSECURE_TLS": "true",
    }
    assert tracking_uri("", env) == "https://mlflow.example.com"
    assert tracking_uri("http://other:5000", env) == "http://other:5000"
    client = MLflow.from_env(tracking_uri("", env), env)
    assert (client.username, client.verify) == ("ci", False)
    assert "s3cret-pass" not in repr(client)
    assert client._redact("failed with s3cret-pass") == "failed with ***"
    with pytest.raises(EnvironmentMissing, match="not an http"):
        MLflow("databricks")
    error = MLflowApiError("x", status=400, code="INVALID_PARAMETER_VALUE")
    assert error.exit_code == 2
    assert MLflowApiError("x", status=403, code="PERMISSION_DENIED").exit_code == 3


def test_artifact_uris_mlcd_can_and_cannot_reach(tmp_path: Path) -> None:
    client = MLflow("http://127.0.0.1:5999")
    kind, where = client._artifact_target("mlflow-artifacts:/1/abc/artifacts", "model/m.skops")
    assert (kind, where) == (
        "http",
        "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/m.skops",
    )
    source = tmp_path / "f.txt"
    source.write_text("x")
    client.upload(f"file://{tmp_path}/art", "model/f.txt", source)
    assert (tmp_path / "art" / "model" / "f.txt").read_text() == "x"
    assert client.download(str(tmp_path / "art"), "model/f.txt", tmp_path / "back.txt")
    assert not client.download(str(tmp_path / "art"), "model/none.txt", tmp_path / "n.txt")
    with pytest.raises(EnvironmentMissing, match="artifact store"):
        client._artifact_target("s3://bucket/path", "x")

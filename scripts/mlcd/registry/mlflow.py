"""The MLflow registry backend: model versions are versions of an MLflow registered model.

Layout on the tracking server (`registry.tracking-uri`, else MLFLOW_TRACKING_URI)::

    registered model  <model-name> (default: the project)
      version N                       mlcd's vN: MLflow numbers versions in its database,
                                      so two writers can never get one number
        source  runs:/…/model         a run of experiment `mlcd/<model-name>` whose artifacts
                                      `model/` hold MLmodel (flavour `mlcd`, signature),
                                      input_example.json, model.skops, model.json,
                                      mlcd-record.json and the extra files
        tags    mlcd.fingerprint, mlcd.model_sha256, mlcd.verdict (passed|failed),
                mlcd.image_digest, mlcd.evidence_digest, mlcd.<attachment> (JSON)
      alias   champion → N            moved by a production deploy; evaluate compares to it
      tag     mlcd.alias-history.<alias>   the versions an alias named (MLflow keeps none)
    experiment  mlcd/<model-name>/releases/<release>   a release version's claim (atomic:
                                      the server refuses a second experiment of one name)

A team's MLflow UI shows mlcd's versions with their verdict and digests, the `champion`
alias is MLflow's own, and MLflow clients that load `models:/<name>@champion` see what is live.
"""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlcd import __version__, modelmeta
from mlcd.contracts import META_FILE, MODEL_FILE
from mlcd.errors import GateFailed, UserInputError
from mlcd.evidence import utc_now
from mlcd.modelio import file_sha256
from mlcd.registry.base import ModelRegistry, ModelVersion, NewVersion
from mlcd.tools.mlflow import MLflow, json_text

RECORD = "mlcd-record.json"
MLMODEL = "MLmodel"
EXAMPLE = "input_example.json"
ARTIFACT_PATH = "model"
TAG = "mlcd."
_HISTORY = "mlcd.alias-history."
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_ALIAS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$")
_TAG_LIMIT = 5000  # what MLflow's stores accept in a tag value everywhere
_MLFLOW_TYPE = {
    "number": "double",
    "integer": "long",
    "boolean": "boolean",
    "category": "string",
    "text": "string",
    "datetime": "datetime",
}


def signature(metadata: dict[str, Any]) -> dict[str, Any]:
    """MLflow's model signature (a column-based schema) from model.json's features."""
    inputs = [
        {
            "type": _MLFLOW_TYPE.get(modelmeta.kind_of(f), "double"),
            "name": str(f["name"]),
            "required": True,
        }
        for f in metadata.get("features", [])
    ]
    classes = metadata.get("classes")
    if metadata.get("task") == "classification" and classes:
        out = "string" if any(isinstance(c, str) for c in classes) else "long"
    else:
        out = "double"
    return {
        "inputs": json.dumps(inputs),
        "outputs": json.dumps([{"type": out, "required": True}]),
        "params": None,
    }


def _example_value(feature: dict[str, Any]) -> Any:
    kind = feature.get("kind", "number")
    if kind in ("category",) and feature.get("categories"):
        return feature["categories"][0]
    if kind == "boolean":
        return False
    if kind == "text":
        return "text"
    if kind == "datetime":
        return "2024-01-01"
    low = feature.get("min")
    if kind == "integer":
        return int(low) if isinstance(low, int | float) else 0
    return float(low) if isinstance(low, int | float) else 0.0


def input_example(metadata: dict[str, Any]) -> dict[str, Any]:
    """One row in pandas' split orient (what MLflow's UI and `mlflow models serve` use)."""
    features = metadata.get("features", [])
    return {
        "columns": [str(f["name"]) for f in features],
        "data": [[_example_value(f) for f in features]],
    }


def mlmodel(metadata: dict[str, Any], run_id: str) -> str:
    """The MLmodel file: mlcd's own flavour (skops file, not a pickle), signature, example."""
    versions = metadata.get("versions") or {}
    doc = {
        "artifact_path": ARTIFACT_PATH,
        "flavors": {
            "mlcd": {
                "model_file": MODEL_FILE,
                "serialization_format": "skops",
                "metadata": META_FILE,
                "mlcd_version": __version__,
                "sklearn_version": str(versions.get("sklearn", "")),
            }
        },
        "run_id": run_id,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "signature": signature(metadata),
        "saved_input_example_info": {
            "artifact_path": EXAMPLE,
            "type": "dataframe",
            "pandas_orient": "split",
        },
    }
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False))


def _tag_value(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def _read_tag(text: str) -> Any:
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _number(version: str) -> int:
    match = _VERSION.match(version)
    if match is None:
        raise UserInputError(f"`{version}` is not a model version (they look like v1, v2, …)")
    return int(match.group(1))


class MLflowRegistry(ModelRegistry):
    """A registry in an MLflow tracking server's Model Registry."""

    backend = "mlflow"
    reserved_files = frozenset({MODEL_FILE, META_FILE, RECORD, MLMODEL, EXAMPLE})

    def __init__(self, client: MLflow, name: str) -> None:
        self.client = client
        self.name = name
        self.experiment = f"mlcd/{name}"
        self._records: dict[str, dict[str, Any]] = {}  # source → its record (immutable)

    @property
    def location(self) -> str:
        return f"MLflow registered model `{self.name}` at {self.client.uri}"

    # ------------------------------------------------------------------ helpers

    def _record(self, source: str) -> dict[str, Any]:
        if source not in self._records:
            with tempfile.TemporaryDirectory(prefix="mlcd-mlflow-") as tmp:
                path = Path(tmp) / RECORD
                if not self.client.download(source, RECORD, path):
                    raise UserInputError(
                        f"model registry: {self.location}: the version with source {source} "
                        f"has no {RECORD}",
                        hint="it was not registered by mlcd; give mlcd a registered model of "
                        "its own (registry.model-name)",
                    )
                self._records[source] = json.loads(path.read_text("utf-8"))
        return self._records[source]

    def _load(self, mv: dict[str, Any]) -> ModelVersion:
        record = dict(self._record(str(mv["source"])))
        record["version"] = f"v{mv['version']}"
        created = mv.get("creation_timestamp")
        if created:
            at = datetime.fromtimestamp(int(created) / 1000, UTC)
            record["created"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        attachments = {}
        for tag in mv.get("tags") or []:
            key = str(tag.get("key", ""))
            name = key[len(TAG) :]
            if key.startswith(TAG) and name not in ("fingerprint", "model_sha256", "verdict"):
                attachments[name] = _read_tag(str(tag.get("value", "")))
        return ModelVersion.from_record(record, attachments)

    def _version(self, version: str) -> dict[str, Any]:
        number = _number(version)
        found = self.client.model_version(self.name, number)
        if found is None:
            known = ", ".join(v.version for v in self.versions()[-10:]) or "none yet"
            raise UserInputError(
                f"model registry ({self.location}) has no version {version}",
                hint=f"versions there: {known}",
            )
        return found

    # ------------------------------------------------------------------ interface

    def _store(self, new: NewVersion) -> ModelVersion:
        client = self.client
        metadata = dict(new.metadata)
        client.ensure_registered_model(
            self.name, f"Model versions delivered by mlcd (project {metadata.get('name', '')})."
        )
        experiment_id = client.experiment_id(self.experiment)
        fingerprint = str(metadata.get("fingerprint", ""))
        run = client.create_run(
            experiment_id,
            f"register {fingerprint[:12] or 'model'}",
            {"mlcd.kind": "registration", "mlflow.source.name": "mlcd"},
        )
        run_id, artifacts = str(run["run_id"]), str(run["artifact_uri"])
        sha = file_sha256(new.model_file)
        record = new.record("", sha)  # the version is MLflow's number, known once created
        verdict = new.verdict
        with tempfile.TemporaryDirectory(prefix="mlcd-mlflow-") as tmp:
            folder = Path(tmp)
            (folder / RECORD).write_text(json_text(record), "utf-8")
            (folder / META_FILE).write_text(json.dumps(metadata, indent=2, default=str), "utf-8")
            (folder / MLMODEL).write_text(mlmodel(metadata, run_id), "utf-8")
            (folder / EXAMPLE).write_text(json.dumps(input_example(metadata)), "utf-8")
            files = {
                MODEL_FILE: new.model_file,
                **new.extra,
                META_FILE: folder / META_FILE,
                MLMODEL: folder / MLMODEL,
                EXAMPLE: folder / EXAMPLE,
                RECORD: folder / RECORD,  # last: a version's record means its files are there
            }
            for name, path in files.items():
                client.upload(artifacts, f"{ARTIFACT_PATH}/{name}", path)
        client.finish_run(run_id)
        source = f"{artifacts.rstrip('/')}/{ARTIFACT_PATH}"
        tags = {"mlcd.fingerprint": fingerprint, "mlcd.model_sha256": sha}
        if verdict is not None:
            tags["mlcd.verdict"] = "passed" if verdict.get("passed") else "failed"
        created = client.create_version(
            self.name,
            source=source,
            run_id=run_id,
            tags=tags,
            description=f"mlcd model {metadata.get('name', '')} (fingerprint {fingerprint[:12]})",
        )
        self._records[source] = record
        return self._load(created)

    def get(self, version: str) -> ModelVersion:
        return self._load(self._version(version))

    def versions(self) -> list[ModelVersion]:
        found = sorted(self.client.model_versions(self.name), key=lambda mv: int(mv["version"]))
        return [self._load(mv) for mv in found if str(mv.get("status", "READY")) == "READY"]

    def latest(self) -> ModelVersion | None:
        found = [int(mv["version"]) for mv in self.client.model_versions(self.name)]
        return self.get(f"v{max(found)}") if found else None

    def set_alias(self, name: str, version: str) -> None:
        if not _ALIAS.match(name) or re.fullmatch(r"[vV][0-9]+|latest", name):
            raise UserInputError(f"model registry: `{name}` is not a valid MLflow alias name")
        number = int(self._version(version)["version"])
        self.client.set_alias(self.name, name, number)
        history = self.alias_history(name)
        history.append({"version": version, "at": utc_now()})
        text = json_text(history)
        while len(text) > _TAG_LIMIT and len(history) > 1:  # the oldest moves go first
            history = history[1:]
            text = json_text(history)
        self.client.set_model_tag(self.name, _HISTORY + name, text)

    def aliases(self) -> dict[str, str]:
        model = self.client.registered_model(self.name) or {}
        return {str(a["alias"]): f"v{a['version']}" for a in model.get("aliases") or []}

    def alias(self, name: str) -> ModelVersion | None:
        if self.client.registered_model(self.name) is None:
            return None
        found = self.client.version_by_alias(self.name, name)
        return self._load(found) if found else None

    def alias_history(self, name: str) -> list[dict[str, str]]:
        model = self.client.registered_model(self.name) or {}
        for tag in model.get("tags") or []:
            if tag.get("key") == _HISTORY + name:
                items = _read_tag(str(tag.get("value", "")))
                if isinstance(items, list):
                    return [{"version": str(i["version"]), "at": str(i["at"])} for i in items]
        return []

    def attach(self, version: str, key: str, value: Any) -> ModelVersion:
        current = self.get(version)
        value = json.loads(json.dumps(value, default=str))
        if key in current.attachments and current.attachments[key] != value:
            raise UserInputError(
                f"model registry: version {version} already has {key} = "
                f"{current.attachments[key]!r}; a version's recorded facts are never overwritten",
                hint="register a new version for a new model or image",
            )
        self._set_tag(version, key, value)
        return self.get(version)

    def append(self, version: str, key: str, item: Any) -> ModelVersion:
        current = self.get(version).attachments.get(key, [])
        if not isinstance(current, list):
            raise UserInputError(f"model registry: {key} of version {version} is not a list")
        items = [*current, json.loads(json.dumps(item, default=str))]
        while len(json_text(items)) > _TAG_LIMIT and len(items) > 1:
            items = items[1:]  # a tag holds 5000 characters: the newest items stay
        self._set_tag(version, key, items)
        return self.get(version)

    def _set_tag(self, version: str, key: str, value: Any) -> None:
        text = _tag_value(value)
        if len(text) > _TAG_LIMIT:
            raise UserInputError(
                f"model registry: {key} of {version} is {len(text)} characters; an MLflow tag "
                f"holds {_TAG_LIMIT}"
            )
        self.client.set_version_tag(self.name, _number(version), TAG + key, text)

    def model_file(self, version: str, workdir: Path) -> Path:
        mv = self._version(version)
        record = self._load(mv)
        workdir.mkdir(parents=True, exist_ok=True)
        target = workdir / f"{self.name}-{version}-{MODEL_FILE}"
        if not self.client.download(str(mv["source"]), MODEL_FILE, target):
            raise UserInputError(f"model registry: {version} has no {MODEL_FILE} artifact")
        if file_sha256(target) != record.model_sha256:
            target.unlink()
            raise GateFailed(
                f"model registry: the {MODEL_FILE} of {version} downloaded from MLflow does not "
                "match its recorded sha256; it will not be loaded"
            )
        return target

    def claim_release(self, version: str, *, commit: str) -> bool:
        """An experiment `mlcd/<model>/releases/<version>`: the server creates one experiment
        of a name, so two release jobs never take one version."""
        return self.client.create_experiment(
            f"{self.experiment}/releases/{version}",
            {"mlcd.release": version, "mlcd.commit": commit},
        )

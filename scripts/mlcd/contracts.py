"""The contract between stages: what each stage's `details` hold, and the files it writes.

Stages pass nothing to each other but the run folder (`evidence.Bundle`). This module is
the one place that knows the keys of `<stage>/result.json`'s `details` and the names of the
files in `train/` and `evaluate/` (docs/internals.md, "Files between stages"). Everything
else — later stages, the run page, the PR comment, the step outputs — reads a stage's
details through `details(result, Model)` or `read_details(bundle, stage)` and gets a typed
model, never a dict to index by string.

The models accept every result.json that today's stages write, and older ones: every field
has a default, and `extra="allow"` keeps what a model does not name (dumped back
unchanged). Two ways to read:

- `strict=True` (a stage that needs an earlier one's output): a value of the wrong type is
  exit 2 naming the file and the key;
- `strict=False` (the run page and the PR comment, which show what they can): a key with a
  value of the wrong type is left out (read as its default), the rest is kept.

Writers build the model and `dump()` it: `exclude_unset` keeps the dict exactly the one
the stage passed (no defaults added), so result.json files do not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError

from mlcd import stagenames
from mlcd.errors import UserInputError
from mlcd.evidence import Bundle, StageResult

# ----------------------------------------------------------------------------- files

MODEL_FILE = "model.skops"  # train/: the fitted estimator (skops)
META_FILE = "model.json"  # train/: the model's metadata and input schema
HOLDOUT_FILE = "holdout.csv"  # train/: the held-out rows (features, then the target)
VERDICT_FILE = "verdict.json"  # evaluate/: {"passed", "checks", ...}
RESULT_FILE = "result.json"  # every stage
SUMMARY_FILE = "summary.md"  # every stage


@dataclass(frozen=True)
class TrainFiles:
    """Where `mlcd train` wrote the model, its metadata and the held-out rows."""

    model: Path
    meta: Path
    holdout: Path

    def exist(self) -> bool:
        return self.model.is_file() and self.meta.is_file()


def train_files(bundle: Bundle) -> TrainFiles:
    """The train stage's files, as its result.json's `artifacts` name them (the standard
    names in `train/` when there is no result, or it names none)."""
    folder = bundle.root / "train"
    result = bundle.read("train")
    named = result.artifacts if result is not None else {}

    def path(key: str, default: str) -> Path:
        rel = named.get(key)
        return bundle.root / rel if rel else folder / default

    return TrainFiles(
        model=path("model", MODEL_FILE),
        meta=path("metadata", META_FILE),
        holdout=path("holdout", HOLDOUT_FILE),
    )


def verdict_file(bundle: Bundle) -> Path:
    return bundle.root / "evaluate" / VERDICT_FILE


# ----------------------------------------------------------------------------- models


class Details(BaseModel):
    """The fields every stage's details may hold; a stage's model adds its own."""

    model_config = ConfigDict(extra="allow")

    exit_code: int | None = None  # a stage that ended in an error (exit 2 or 3)

    def dump(self) -> dict[str, Any]:
        """The dict for `StageOutcome.details`: only what was set, extras included."""
        return self.model_dump(mode="python", exclude_unset=True)

    def first(self, *keys: str) -> Any:
        """The value of the first of `keys` that the stage wrote (None if none): for
        readers that accept the names older versions used too."""
        given = self.dump()
        return next((given[k] for k in keys if k in given), None)

    def scalars(self, keys: Sequence[str]) -> dict[str, str]:
        """The `keys` whose values are strings or numbers, as text (GitHub step outputs)."""
        given = self.dump()
        return {
            k: str(given[k])
            for k in keys
            if isinstance(given.get(k), str | int | float) and not isinstance(given[k], bool)
        }


class Tracked(BaseModel):
    """The stage's run on an MLflow tracking server (`mlcd.tracking`), when one is set."""

    model_config = ConfigDict(extra="allow")

    uri: str = ""
    run_id: str | None = None
    url: str | None = None
    error: str | None = None


class TrainDetails(Details):
    tracking: Tracked | None = None
    fingerprint: str = ""
    fit_seconds: int | float | None = None
    reused_from: str | None = None
    model_sha256: str = ""
    project_types: list[Any] = []
    declared_types: list[Any] = []
    project_modules: list[Any] = []


class Registered(BaseModel):
    """Where the candidate is in the model registry (`evaluation.register_candidate`)."""

    model_config = ConfigDict(extra="allow")

    registered: bool | None = None
    version: str | None = None
    reason: str | None = None
    registry: str | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_unset=True)


class EvaluateDetails(Details):
    tracking: Tracked | None = None
    intervals: dict[str, Any] = {}
    comparison: dict[str, Any] = {}
    registry: Registered | None = None
    slices: Any = None

    @property
    def model_version(self) -> str | None:
        return self.registry.version if self.registry is not None else None


class ContractTest(BaseModel):
    """The build's contract test: the image's predictions against the in-process model."""

    model_config = ConfigDict(extra="allow")

    skipped: bool = False
    passed: bool | None = None
    rows: int | None = None
    agree: int | None = None
    ready_seconds: int | float | None = None
    health: Any = None
    user: str | None = None
    problems: list[Any] = []
    forms: Any = None  # {form: rows that agree}


class BuildDetails(Details):
    image: str = ""
    image_id: str = ""
    digest: str = ""
    tag: str = ""
    name: str = ""
    size_bytes: int | float | None = None
    size_mb: int | float | None = None
    labels: dict[str, Any] = {}
    user: str = ""
    base_image: str = ""
    build_seconds: int | float | None = None
    cached_steps: int | None = None
    steps: int | None = None
    docker_engine: Any = None
    model_version: str | None = None
    contract: ContractTest = ContractTest()
    dockerfile: str | None = None


class ScanDetails(Details):
    image: str | None = None
    image_os: str | None = None
    trivy_version: str | None = None
    db: dict[str, Any] | None = None
    parts: list[Any] = []
    policy: dict[str, Any] = {}
    ignores: dict[str, Any] = {}
    sarif: dict[str, Any] = {}

    @property
    def expired_ignores(self) -> list[Any]:
        expired = self.ignores.get("expired")
        return expired if isinstance(expired, list) else []


class ReleaseDetails(Details):
    version: str = ""
    image: str = ""  # name@sha256:… (the registry's manifest digest)
    model_version: str | None = None
    image_id: str = ""
    evidence_digest: str = ""
    evidence: str | None = None  # where the evidence bundle is stored
    released: str = ""
    existing: bool | None = None
    tag: str = ""  # the image's tag (name:version), no git tag
    registry: str = ""
    signing: dict[str, Any] = {}  # mode (key | off), key hint, public key, tags, sizes


class DeployDetails(Details):
    env: str = ""
    version: str = ""
    image: str = ""
    strategy: str = ""
    target: str = ""
    outcome: str = ""
    live: dict[str, Any] | None = None
    url: str = ""
    router: str = ""
    state_file: str = ""
    measurements: list[Any] = []
    waiting_for: Any = None
    analysis: dict[str, Any] = {}  # the judge's limits (max_error_rate, max_p99_latency_ms)
    signing: dict[str, Any] = {}  # the verified chain (mlcd.signing.verify), or mode off
    # the rollout's events and their webhook deliveries (mlcd.rollout.notify.Notifier.record)
    notifications: dict[str, Any] = {}

    @property
    def http_url(self) -> str | None:
        """The environment's address (older targets wrote it under other names)."""
        for key in ("url", "endpoint", "router_url", "environment_url"):
            value = self.first(key)
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                return value
        return None


# Stages whose details have a model of their own; the others (lint, test, the deploys'
# prefix aside) are read as `Details`.
_MODELS: dict[str, type[Details]] = {
    "train": TrainDetails,
    "evaluate": EvaluateDetails,
    "build": BuildDetails,
    "scan": ScanDetails,
    "release": ReleaseDetails,
}


def model_for(stage: str) -> type[Details]:
    if stagenames.is_deploy(stage):
        return DeployDetails
    return _MODELS.get(stage, Details)


# ----------------------------------------------------------------------------- reading

D = TypeVar("D", bound=Details)


def parse(model: type[D], data: Mapping[str, Any]) -> D:
    """Validate, leaving out each top-level key whose value has the wrong type."""
    kept = dict(data)
    for _ in range(len(kept) + 1):
        try:
            return model.model_validate(kept)
        except ValidationError as exc:
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
            if not bad & kept.keys():
                break
            for key in bad:
                kept.pop(str(key), None)
    return model()


def details(result: StageResult, model: type[D], *, strict: bool = False) -> D:
    """A stage result's details as `model`."""
    if not strict:
        return parse(model, result.details)
    try:
        return model.model_validate(result.details)
    except ValidationError as exc:
        where = "; ".join(
            f"details.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UserInputError(
            f"{result.stage}/{RESULT_FILE}: {where}",
            hint=f"re-run `mlcd {stagenames.command(result.stage)}` with this version of mlcd",
        ) from exc


@overload
def read_details(bundle: Bundle, stage: str, model: type[D], *, strict: bool = ...) -> D | None: ...
@overload
def read_details(bundle: Bundle, stage: str) -> Details | None: ...
def read_details(
    bundle: Bundle, stage: str, model: type[Details] | None = None, *, strict: bool = False
) -> Details | None:
    """The details of `stage` in the bundle as its model, or None when it has not run."""
    result = bundle.read(stage)
    if result is None:
        return None
    return details(result, model or model_for(stage), strict=strict)

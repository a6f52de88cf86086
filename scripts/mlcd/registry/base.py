"""The model registry's interface: what every backend (local folder, GitHub) provides.

A version is immutable once registered: its model file, metadata (`train/model.json`),
metrics and verdict never change. Facts learned later (the image digest and evidence
digest of a release, the deployments) are *attached*: a key is set once and never
overwritten with a different value; `append` grows a list (deployments). Aliases name a
version (`champion` is what is live in production) and keep their history.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd.contracts import MODEL_FILE
from mlcd.errors import UserInputError
from mlcd.evidence import utc_now

CHAMPION = "champion"
# Attachment keys that other stages use (release, deploy); any other key is allowed too.
IMAGE_DIGEST = "image_digest"  # `name@sha256:…` or `sha256:…` of the serving image
EVIDENCE_DIGEST = "evidence_digest"  # sha256 of the evidence bundle of the release
DEPLOYMENTS = "deployments"  # list, grown with `append`


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as a backend returns it."""

    version: str
    created: str
    fingerprint: str
    model_sha256: str
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    verdict: dict[str, Any] | None
    files: list[str] = field(default_factory=list)
    attachments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], attachments: Mapping[str, Any]) -> ModelVersion:
        """The version a backend's stored record (`NewVersion.record`) and attachments describe."""
        return cls(
            version=str(record["version"]),
            created=str(record["created"]),
            fingerprint=str(record.get("fingerprint", "")),
            model_sha256=str(record["model_sha256"]),
            metadata=dict(record.get("metadata") or {}),
            metrics=dict(record.get("metrics") or {}),
            verdict=record.get("verdict"),
            files=[str(f) for f in record.get("files", [])],
            attachments=dict(attachments),
        )

    @property
    def image_digest(self) -> str | None:
        value = self.attachments.get(IMAGE_DIGEST)
        return str(value) if value is not None else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (what `result.json` details and reports show)."""
        return {
            "version": self.version,
            "created": self.created,
            "fingerprint": self.fingerprint,
            "model_sha256": self.model_sha256,
            "metrics": self.metrics,
            "passed": None if self.verdict is None else self.verdict.get("passed"),
            "attachments": self.attachments,
        }


def digest_matches(recorded: str, wanted: str) -> bool:
    """`name@sha256:x`, `sha256:x` and `x` all name the same digest."""

    def bare(text: str) -> str:
        return text.rsplit("@", 1)[-1].removeprefix("sha256:").strip().lower()

    return bool(recorded) and bool(wanted) and bare(recorded) == bare(wanted)


@dataclass(frozen=True)
class NewVersion:
    """A version to store, checked by `ModelRegistry.register`: what a backend's `_store` gets."""

    model_file: Path
    metadata: Mapping[str, Any]
    metrics: Mapping[str, Any]
    verdict: Mapping[str, Any] | None
    extra: dict[str, Path]

    def record(self, version: str, model_sha256: str) -> dict[str, Any]:
        """The version's record as every backend keeps it, created now."""
        return {
            "version": version,
            "created": utc_now(),
            "fingerprint": str(self.metadata.get("fingerprint", "")),
            "model_sha256": model_sha256,
            "metadata": dict(self.metadata),
            "metrics": dict(self.metrics),
            "verdict": dict(self.verdict) if self.verdict is not None else None,
            "files": [MODEL_FILE, *sorted(self.extra)],
        }


# an extra file's name: one plain file name, as both backends store it (a file, an asset)
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ModelRegistry(ABC):
    """Every backend implements these; stages use nothing else."""

    backend: str = "abstract"
    reserved_files: frozenset[str] = frozenset()

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the registry is, for messages (a folder, a repository)."""

    def register(
        self,
        *,
        model_file: Path,
        metadata: Mapping[str, Any],
        metrics: Mapping[str, Any],
        verdict: Mapping[str, Any] | None,
        files: Mapping[str, Path] | None = None,
    ) -> ModelVersion:
        """Store a new version (model file, metadata, metrics, verdict, extra files).

        An extra file's name must be a plain file name the backend does not keep for itself
        (`reserved_files`), and the model file must exist (UserInputError, exit 2, before the
        backend stores anything)."""
        extra = dict(files or {})
        for name in extra:
            if name in self.reserved_files or not _FILE_NAME.match(name):
                raise UserInputError(f"model registry: `{name}` cannot be a version's file name")
        if not model_file.is_file():
            raise UserInputError(f"model registry: model file {model_file} does not exist")
        return self._store(NewVersion(model_file, metadata, metrics, verdict, extra))

    @abstractmethod
    def _store(self, new: NewVersion) -> ModelVersion:
        """Store the checked new version: the backend's half of `register`."""

    @abstractmethod
    def get(self, version: str) -> ModelVersion:
        """A version, or UserInputError (exit 2) naming the versions there are."""

    @abstractmethod
    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""

    @abstractmethod
    def set_alias(self, name: str, version: str) -> None:
        """Point an alias at a version (kept in the alias's history)."""

    @abstractmethod
    def aliases(self) -> dict[str, str]:
        """Every alias and the version it names."""

    @abstractmethod
    def alias_history(self, name: str) -> list[dict[str, str]]:
        """The versions an alias named, oldest first: `{"version", "at"}`."""

    def claim_release(self, version: str, *, commit: str) -> bool:
        """Take release `version` atomically before anything is pushed: True when this call
        took it, False when another release already holds it (the caller moves on to the
        next version; a taken version is never overwritten). `commit` is what is released."""
        raise NotImplementedError(f"the {self.backend} registry cannot take release versions")

    def keep_evidence(self, release: str, tarball: Path) -> str:  # noqa: ARG002 - see local
        """Where release `release`'s evidence bundle is kept. A backend that stores bundles
        copies it and returns its copy; by default it stays in the run folder (`tarball`)."""
        return str(tarball)

    def record_release(self, release: str, record: dict[str, Any]) -> None:  # noqa: B027
        """Keep the release's record beside its bundle, for a backend with a folder per
        release; by default the model version's `releases` attachment is the record."""

    def reclaim_release(self, version: str, *, commit: str) -> bool:
        """Take over release `version` from a claim whose release was interrupted (its process
        is gone): True when this call took it. False when the claimer may still be at work,
        or this backend cannot tell (then the next release moves on to the next version)."""
        _ = version, commit
        return False

    @abstractmethod
    def attach(self, version: str, key: str, value: Any) -> ModelVersion:
        """Record a fact about a version; a key once set is never changed to another value."""

    @abstractmethod
    def append(self, version: str, key: str, item: Any) -> ModelVersion:
        """Add an item to a list-valued attachment (e.g. `deployments`)."""

    @abstractmethod
    def model_file(self, version: str, workdir: Path) -> Path:
        """A local path to the version's model file, checked against its sha256.

        A remote backend downloads into `workdir`; the local backend returns its own copy.
        """

    # Derived lookups: a backend may override them with something faster.

    def latest(self) -> ModelVersion | None:
        found = self.versions()
        return found[-1] if found else None

    def alias(self, name: str) -> ModelVersion | None:
        version = self.aliases().get(name)
        return self.get(version) if version is not None else None

    def find_by_fingerprint(self, fingerprint: str) -> ModelVersion | None:
        """The newest version trained from the same data, code and params."""
        for version in reversed(self.versions()):
            if version.fingerprint == fingerprint:
                return version
        return None

    def find_by_image_digest(self, digest: str) -> ModelVersion | None:
        for version in reversed(self.versions()):
            recorded = version.image_digest
            if recorded is not None and digest_matches(recorded, digest):
                return version
        return None

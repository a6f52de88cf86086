"""The model registry's interface: what every backend (local folder, GitHub) provides.

A version is immutable once registered: its model file, metadata (`train/model.json`),
metrics and verdict never change. Facts learned later (the image digest and evidence
digest of a release, the deployments) are *attached*: a key is set once and never
overwritten with a different value; `append` grows a list (deployments). Aliases name a
version (`champion` is what is live in production) and keep their history.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class ModelRegistry(ABC):
    """Every backend implements these; stages use nothing else."""

    backend: str = "abstract"

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the registry is, for messages (a folder, a repository)."""

    @abstractmethod
    def register(
        self,
        *,
        model_file: Path,
        metadata: Mapping[str, Any],
        metrics: Mapping[str, Any],
        verdict: Mapping[str, Any] | None,
        files: Mapping[str, Path] | None = None,
    ) -> ModelVersion:
        """Store a new version (model file, metadata, metrics, verdict, extra files)."""

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

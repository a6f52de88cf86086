"""Releases as the model registry records them (written by `mlcd release`, read by deploy).

A release is a semantic version (0.1.0, 0.1.1, …) for one pushed image. It belongs to a
registered model version (v1, v2, … from `mlcd evaluate`) and is kept, append-only, in
that version's `releases` attachment: the image by registry digest, the image's content
digest (`image_id`), the evidence bundle's sha256 and where the bundle is stored. The
first release of a model version also sets its `image_digest` and `evidence_digest`
attachments. Release versions and their digests are never changed once recorded.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mlcd.errors import GateFailed, UserInputError
from mlcd.registry import DEPLOYMENTS, ModelRegistry, ModelVersion, digest_matches

RELEASES = "releases"
HEALTHY = "healthy"  # the status `mlcd deploy` records for a release live in an environment
FIRST_VERSION = "0.1.0"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True)
class Release:
    version: str
    model_version: str
    image: str  # name@sha256:… (the registry's manifest digest)
    image_id: str  # sha256:… (the image's content digest, stable across pushes)
    evidence_digest: str
    evidence: str
    released: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_version": self.model_version,
            "image": self.image,
            "image_id": self.image_id,
            "evidence_digest": self.evidence_digest,
            "evidence": self.evidence,
            "released": self.released,
        }


def parse_version(text: str) -> tuple[int, int, int]:
    match = SEMVER.match(text)
    if not match:
        raise UserInputError(
            f"release version `{text}` is not MAJOR.MINOR.PATCH (e.g. 1.4.2)",
            hint="pass --version like 1.0.0, or leave it out for the next patch",
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def all_releases(
    registry: ModelRegistry, *, models: list[ModelVersion] | None = None
) -> list[Release]:
    """Every release in the registry, in version order (from `models` when the caller has
    already listed the registry's versions: one listing per command)."""
    found = []
    for model in registry.versions() if models is None else models:
        for item in model.attachments.get(RELEASES) or []:
            if not isinstance(item, dict) or not SEMVER.match(str(item.get("version", ""))):
                continue
            found.append(
                Release(
                    version=str(item["version"]),
                    model_version=model.version,
                    image=str(item.get("image", "")),
                    image_id=str(item.get("image_id", "")),
                    evidence_digest=str(item.get("evidence_digest", "")),
                    evidence=str(item.get("evidence", "")),
                    released=str(item.get("released", "")),
                )
            )
    return sorted(found, key=lambda r: parse_version(r.version))


def get(registry: ModelRegistry, version: str) -> Release:
    """A release by its version, or exit 2 naming the releases there are."""
    releases = all_releases(registry)
    for release in releases:
        if release.version == version:
            return release
    known = ", ".join(r.version for r in releases[-10:]) or "none yet"
    raise UserInputError(
        f"no release {version} in the model registry ({registry.location})",
        hint=f"releases: {known}",
    )


def resolve(registry: ModelRegistry, wanted: str) -> str:
    """What `--release NAME` names: a release version as it is; a model version (`v1`) as
    its newest release, or as itself when it has an image but no release (an older
    registry); anything else refused with exit 2 naming the releases and the model versions.
    """
    if SEMVER.match(wanted):
        return wanted
    models = registry.versions()
    known = all_releases(registry, models=models)
    of_model = [r for r in known if r.model_version == wanted]
    if of_model:
        return of_model[-1].version
    if any(m.version == wanted for m in models):
        return wanted
    names = ", ".join(r.version for r in known[-10:]) or "none yet"
    versions = ", ".join(m.version for m in models[-10:]) or "none yet"
    raise UserInputError(
        f"--release `{wanted}`: no release and no model version `{wanted}` in the model "
        f"registry ({registry.location})",
        hint=f"releases: {names}; model versions: {versions}",
    )


def latest(registry: ModelRegistry) -> Release | None:
    releases = all_releases(registry)
    return releases[-1] if releases else None


def find_by_image(
    registry: ModelRegistry, digest: str, *, known: list[Release] | None = None
) -> Release | None:
    """The release of an image, by its content digest (image id) or its registry digest."""
    for release in all_releases(registry) if known is None else known:
        if digest_matches(release.image_id, digest) or digest_matches(release.image, digest):
            return release
    return None


def next_version(registry: ModelRegistry, *, known: list[Release] | None = None) -> str:
    """The next patch after the highest release, or 0.1.0 for the first."""
    releases = all_releases(registry) if known is None else known
    if not releases:
        return FIRST_VERSION
    return bump(releases[-1].version)


def bump(version: str) -> str:
    """The next patch: 0.1.3 → 0.1.4."""
    major, minor, patch = parse_version(version)
    return f"{major}.{minor}.{patch + 1}"


def passed(model: ModelVersion, release: Release, env: str) -> bool:
    """Whether `release` was live and healthy in `env` (the deployments `mlcd deploy` records
    on the release's model version)."""
    for item in model.attachments.get(DEPLOYMENTS) or []:
        if not isinstance(item, dict) or item.get("env") != env or item.get("status") != HEALTHY:
            continue
        if item.get("release") == release.version or (
            release.image and digest_matches(str(item.get("image", "")), release.image)
        ):
            return True
    return False


def newest_passing(registry: ModelRegistry, requires: list[str]) -> Release | None:
    """The newest release that passed every environment in `requires` (the newest release
    when there are none): what a deploy without --release rolls out. Lists the registry once."""
    models = registry.versions()
    by_version = {model.version: model for model in models}
    for release in reversed(all_releases(registry, models=models)):
        model = by_version.get(release.model_version)
        if model is not None and all(passed(model, release, env) for env in requires):
            return release
    return None


def default_version(registry: ModelRegistry, requires: list[str]) -> str | None:
    """The release `mlcd deploy ENV` rolls out when neither --release nor the run folder
    names one: the newest that passed every `requires:` of ENV (None: there is none, and the
    deploy's gates say why the newest cannot go)."""
    found = newest_passing(registry, requires)
    return found.version if found is not None else None


# what a deploy of a release in a fresh folder takes from its evidence: the held-out rows
# (load tests and analysis), the verdict, the scan and the build's record
_RESTORED = ("train", "evaluate", "scan", "build")


def _evidence_bytes(registry: ModelRegistry, release: Release) -> bytes | None:
    if release.evidence and Path(release.evidence).is_file():
        return Path(release.evidence).read_bytes()
    fetch = getattr(registry, "release_asset", None)
    if fetch is None:
        return None
    data = fetch(release.model_version, f"evidence-{release.version}.tar.gz")
    return data if isinstance(data, bytes) else None


def evidence_archive(registry: ModelRegistry, version: str) -> bytes | None:
    """Release `version`'s evidence bundle (evidence.tar.gz) wherever the registry keeps it
    (a file, or a GitHub release's asset), checked against the release's recorded digest;
    None when there is none to read. A mismatch is exit 1, as in `restore_evidence`."""
    release = get(registry, version)
    data = _evidence_bytes(registry, release)
    if data is None:
        return None
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if release.evidence_digest and digest != release.evidence_digest:
        raise GateFailed(
            f"the evidence of release {version} does not match its recorded digest "
            f"({digest} ≠ {release.evidence_digest}); it is not used",
        )
    return data


def restore_evidence(registry: ModelRegistry, version: str, root: Path) -> list[str]:
    """Put release `version`'s evidence (train/, evaluate/, scan/, build/) into the run folder
    `root` when it has none of its own: a deploy of an existing release (workflow_dispatch, a
    fresh clone) needs the held-out rows its rollout sends. The archive must match the
    release's recorded evidence digest; only plain files under those folders are written,
    never over an existing file. Returns the folders restored."""
    data = evidence_archive(registry, version)
    if data is None:
        return []
    restored: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            if (
                not member.isfile()
                or len(parts) < 3
                or parts[0] != "evidence"
                or parts[1] not in _RESTORED
                or any(part in ("..", "") for part in parts)
                or ((root / parts[1]).exists() and parts[1] not in restored)
            ):
                continue
            target = root.joinpath(*parts[1:])
            if target.exists():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(handle.read())
            restored.add(parts[1])
    return sorted(restored)

"""Releases as the model registry records them (written by `mlcd release`, read by deploy).

A release is a semantic version (0.1.0, 0.1.1, …) for one pushed image. It belongs to a
registered model version (v1, v2, … from `mlcd evaluate`) and is kept, append-only, in
that version's `releases` attachment: the image by registry digest, the image's content
digest (`image_id`), the evidence bundle's sha256 and where the bundle is stored. The
first release of a model version also sets its `image_digest` and `evidence_digest`
attachments. Release versions and their digests are never changed once recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlcd.errors import UserInputError
from mlcd.registry import ModelRegistry, digest_matches

RELEASES = "releases"
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


def all_releases(registry: ModelRegistry) -> list[Release]:
    """Every release in the registry, in version order."""
    found = []
    for model in registry.versions():
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


def latest(registry: ModelRegistry) -> Release | None:
    releases = all_releases(registry)
    return releases[-1] if releases else None


def find_by_image(registry: ModelRegistry, digest: str) -> Release | None:
    """The release of an image, by its content digest (image id) or its registry digest."""
    for release in all_releases(registry):
        if digest_matches(release.image_id, digest) or digest_matches(release.image, digest):
            return release
    return None


def next_version(registry: ModelRegistry) -> str:
    """The next patch after the highest release, or 0.1.0 for the first."""
    releases = all_releases(registry)
    if not releases:
        return FIRST_VERSION
    major, minor, patch = parse_version(releases[-1].version)
    return f"{major}.{minor}.{patch + 1}"

"""The model registry: one interface (`ModelRegistry`), backends chosen by `registry.backend`.

`open_registry(loaded)` gives the configured backend. The local backend's folder is
`registry.path` relative to the config file, or `MLCD_REGISTRY_PATH` when that is set.
A backend registers itself in `BACKENDS` (name → factory taking the loaded config).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mlcd.config import LoadedConfig
from mlcd.errors import UserInputError
from mlcd.registry.base import (
    CHAMPION,
    DEPLOYMENTS,
    EVIDENCE_DIGEST,
    IMAGE_DIGEST,
    ModelRegistry,
    ModelVersion,
    digest_matches,
)
from mlcd.registry.local import LocalRegistry

ENV_PATH = "MLCD_REGISTRY_PATH"

__all__ = [
    "BACKENDS",
    "CHAMPION",
    "DEPLOYMENTS",
    "ENV_PATH",
    "EVIDENCE_DIGEST",
    "IMAGE_DIGEST",
    "LocalRegistry",
    "ModelRegistry",
    "ModelVersion",
    "digest_matches",
    "local_path",
    "open_registry",
]


def local_path(loaded: LoadedConfig) -> Path:
    """The local backend's folder: MLCD_REGISTRY_PATH, else registry.path from the config."""
    override = os.environ.get(ENV_PATH)
    if override:
        return Path(override).resolve()
    return loaded.resolve(loaded.config.registry.path)


def _local(loaded: LoadedConfig) -> ModelRegistry:
    return LocalRegistry(local_path(loaded))


def _github(loaded: LoadedConfig) -> ModelRegistry:
    from mlcd.registry.github import GitHubRegistry
    from mlcd.tools.github import GitHub

    return GitHubRegistry(GitHub.from_env(), loaded.config.project)


BACKENDS: dict[str, Callable[[LoadedConfig], ModelRegistry]] = {"local": _local, "github": _github}


def open_registry(loaded: LoadedConfig) -> ModelRegistry:
    backend = loaded.config.registry.backend
    factory = BACKENDS.get(backend)
    if factory is None:
        raise UserInputError(
            f"{loaded.path}: registry.backend `{backend}` is not available in this mlcd",
            hint=f"available backends: {', '.join(sorted(BACKENDS))}",
        )
    return factory(loaded)

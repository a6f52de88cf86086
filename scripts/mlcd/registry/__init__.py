"""The model registry: one interface (`ModelRegistry`), backends chosen by `registry.backend`.

`open_registry(loaded)` gives the configured backend. The local backend's folder is
`registry.path` relative to the config file, or `MLCD_REGISTRY_PATH` when that is set.
A backend registers itself in `BACKENDS` (name → factory taking the loaded config).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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
    "backend_of",
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

    registry = loaded.config.registry
    return GitHubRegistry(
        GitHub.from_env(),
        loaded.config.project,
        production=registry.champion_environment,
        latest=registry.github_latest,
    )


def _mlflow(loaded: LoadedConfig) -> ModelRegistry:
    from mlcd.registry.mlflow import MLflowRegistry
    from mlcd.tools.mlflow import MLflow, tracking_uri

    section = loaded.config.registry
    uri = tracking_uri(section.tracking_uri)
    if not uri:
        raise UserInputError(
            f"{loaded.path}: registry.backend is mlflow, and no tracking server is named",
            hint="set registry.tracking-uri in mlcd.yaml or MLFLOW_TRACKING_URI",
        )
    return MLflowRegistry(MLflow.from_env(uri), section.model_name or loaded.config.project)


BACKENDS: dict[str, Callable[[LoadedConfig], ModelRegistry]] = {
    "local": _local,
    "github": _github,
    "mlflow": _mlflow,
}


def backend_of(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> str:
    """The configured backend; `auto` is github inside GitHub Actions (GITHUB_ACTIONS=true and
    a GITHUB_TOKEN to reach the API), local anywhere else (a laptop, a test suite)."""
    backend = loaded.config.registry.backend
    if backend != "auto":
        return backend
    where = os.environ if env is None else env
    in_actions = where.get("GITHUB_ACTIONS") == "true" and bool(where.get("GITHUB_TOKEN"))
    return "github" if in_actions else "local"


def open_registry(loaded: LoadedConfig) -> ModelRegistry:
    backend = backend_of(loaded)
    factory = BACKENDS.get(backend)
    if factory is None:
        raise UserInputError(
            f"{loaded.path}: registry.backend `{backend}` is not available in this mlcd",
            hint=f"available backends: {', '.join(sorted(BACKENDS))}",
        )
    return factory(loaded)

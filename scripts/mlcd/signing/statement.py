"""The image's in-toto statements: SLSA provenance v1 and mlcd's release predicate.

Both have the pushed image's manifest digest as their one subject. The SLSA predicate says
how the image was made (the workflow run or the command, the source commit, the inputs);
mlcd's says what the image carries and what was checked: the model signature (by digest,
and itself), the data digest, the verdict and scan (sha256 of their files in the evidence
bundle, and their outcome), the evidence bundle's digest, the champion it was compared
with, and the release.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import mlcd

STATEMENT = "https://in-toto.io/Statement/v1"
SLSA = "https://slsa.dev/provenance/v1"
MLCD = "https://mlcd.dev/release/v1"
BUILD_TYPE = "https://mlcd.dev/build/v1"


def subject(repository: str, digest: str) -> list[dict[str, Any]]:
    algorithm, _, value = digest.partition(":")
    return [{"name": repository, "digest": {algorithm: value}}]


def _builder() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The builder's id, the run's metadata and the workflow (GitHub Actions), else this
    machine's mlcd."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo = env.get("GITHUB_REPOSITORY", "")
        run = f"{server}/{repo}/actions/runs/{env.get('GITHUB_RUN_ID', '')}"
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        workflow = {
            "ref": env.get("GITHUB_WORKFLOW_REF", ""),
            "repository": f"{server}/{repo}",
            "event": env.get("GITHUB_EVENT_NAME", ""),
        }
        return (
            f"{server}/{env.get('GITHUB_WORKFLOW_REF', repo)}",
            {"invocationId": f"{run}/attempts/{attempt}"},
            workflow,
        )
    host = platform.node() or "unknown host"
    return f"mlcd {mlcd.__version__} on {host}", {}, {}


def slsa(
    repository: str,
    digest: str,
    *,
    commit: str,
    config: str,
    config_sha256: str,
    data_sha256: str,
    model_digest: str,
    base_image: str,
    started: str,
    finished: str,
) -> dict[str, Any]:
    builder, metadata, workflow = _builder()
    source = os.environ.get("GITHUB_SERVER_URL", "") + "/" + os.environ.get("GITHUB_REPOSITORY", "")
    dependencies: list[dict[str, Any]] = [
        {
            "uri": f"git+{source if source != '/' else 'local'}@{commit}",
            "digest": {"gitCommit": commit},
        },
        {"name": "data", "digest": {"sha256": data_sha256}},
        {"name": "model", "digest": {"sha256": model_digest.removeprefix("sha256:")}},
    ]
    if base_image:
        dependencies.append({"name": "base-image", "uri": base_image})
    external: dict[str, Any] = {"config": config, "config_sha256": config_sha256}
    if workflow:
        external["workflow"] = workflow
    return {
        "_type": STATEMENT,
        "subject": subject(repository, digest),
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"mlcd": mlcd.__version__},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder},
                "metadata": {**metadata, "startedOn": started, "finishedOn": finished},
            },
        },
    }


def release(repository: str, digest: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT,
        "subject": subject(repository, digest),
        "predicateType": MLCD,
        "predicate": predicate,
    }


def subject_digests(data: Any) -> list[str]:
    """`sha256:HEX` of each subject of a statement."""
    found = []
    for item in data.get("subject") or [] if isinstance(data, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("digest"), dict):
            found += [f"{k}:{v}" for k, v in item["digest"].items()]
    return found

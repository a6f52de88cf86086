"""Adding the evaluated model to the model registry (no NumPy: `mlcd release` imports it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcd.contracts import VERDICT_FILE
from mlcd.registry import ModelRegistry


def register_candidate(
    *,
    registry: ModelRegistry,
    model_path: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    verdict: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    """Add the evaluated model to the registry (evaluate does; release too, after an
    evaluate --no-register), unless a version from the same data, code and params exists."""
    fingerprint = str(meta.get("fingerprint", ""))
    earlier = registry.find_by_fingerprint(fingerprint) if fingerprint else None
    if earlier is not None:
        return {
            "registered": False,
            "version": earlier.version,
            "reason": f"a model from the same data, code and params is {earlier.version}",
            "registry": registry.location,
        }
    version = registry.register(
        model_file=model_path,
        metadata=meta,
        metrics=metrics,
        verdict=verdict,
        files={
            "model_card.md": folder / "model_card.md",
            VERDICT_FILE: folder / VERDICT_FILE,
        },
    )
    return {"registered": True, "version": version.version, "registry": registry.location}

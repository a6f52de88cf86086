"""A stage's result as GitHub Actions step outputs and job summary.

Every composite action ends with `mlcd github outputs STAGE`: the values that tools read go to
`$GITHUB_OUTPUT` (multi-line safe, with a random heredoc delimiter), the stage's summary.md to
`$GITHUB_STEP_SUMMARY`. Outside Actions (no such variables) it only returns the values.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from mlcd.contracts import details, model_for
from mlcd.evidence import Bundle

# details keys that become outputs of the same name when a stage records them
_DETAIL_KEYS = (
    "image",
    "image_id",
    "digest",
    "version",
    "tag",
    "url",
    "size_bytes",
    "strategy",
)


def values(bundle: Bundle, stage: str) -> dict[str, str]:
    result = bundle.read(stage)
    if result is None:
        return {"status": "error", "summary": f"{stage} wrote no result in {bundle.root}"}
    found = {"status": result.status, "summary": result.summary}
    found |= details(result, model_for(stage)).scalars(_DETAIL_KEYS)
    if stage == "evaluate":
        found["verdict"] = "pass" if result.status == "pass" else "fail"
    for key, rel in result.artifacts.items():
        if key in ("sarif", "sbom") or key.endswith("_sarif"):
            found[key.replace("_", "-")] = str(bundle.root / rel)
    return found


def _append_outputs(path: Path, items: Mapping[str, str]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for key, value in items.items():
            if "\n" in value:
                delimiter = f"mlcd_{secrets.token_hex(8)}"
                handle.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                handle.write(f"{key}={value}\n")


def write(bundle: Bundle, stage: str, env: Mapping[str, str]) -> dict[str, str]:
    found = values(bundle, stage)
    output = env.get("GITHUB_OUTPUT")
    if output:
        _append_outputs(Path(output), found)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        text = bundle.summary_markdown(stage).strip() or f"**{stage}**: {found['summary']}"
        with Path(summary).open("a", encoding="utf-8") as handle:
            handle.write(text + "\n\n")
    return found


def append(env: Mapping[str, str], items: Mapping[str, str]) -> None:
    """Append `items` to `$GITHUB_OUTPUT` when there is one (outside Actions: nothing)."""
    target = env.get("GITHUB_OUTPUT")
    if target:
        _append_outputs(Path(target), items)

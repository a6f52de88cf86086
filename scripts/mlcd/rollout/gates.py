"""Which release to deploy, and the gates it must pass before any traffic moves.

A release is a registered model version with an image (`release/result.json` of the run
folder, or the registry's `image_digest` attachment). Before a rollout starts:
1. the release exists and has an image;
2. its evaluation verdict passed (`evaluate/verdict.json` of the run, or the registry's record);
3. its scan passed (`scan/result.json` of the run, or the registry's `scan` attachment);
4. every environment in `requires:` has had this release live and healthy (the registry's
   `deployments` attachment, written by `mlcd deploy` when a rollout completes).
Each gate's reason goes into the deploy evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlcd.config import LoadedConfig
from mlcd.errors import UserInputError
from mlcd.evidence import Bundle, utc_now
from mlcd.registry import CHAMPION, DEPLOYMENTS, ModelRegistry, ModelVersion, open_registry

HEALTHY = "healthy"


@dataclass
class Release:
    """What a rollout needs to know about a release."""

    version: str
    image: str
    evaluate_passed: bool | None
    evaluate_source: str
    scan_passed: bool | None
    scan_source: str
    deployments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GateReport:
    passed: bool
    reasons: list[str]
    failures: list[str]


def _bundle_release(bundle: Bundle) -> tuple[str, str] | None:
    result = bundle.read("release")
    if result is None or result.status != "pass":
        return None
    version = result.details.get("version")
    image = result.details.get("image")
    if not version or not image:
        return None
    return str(version), str(image)


def _image_of(record: ModelVersion, image_name: str) -> str | None:
    digest = record.image_digest
    if not digest:
        return None
    if "@" in digest:
        return digest
    bare = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    return f"{image_name}@{bare}"


def _verdict_file(bundle: Bundle) -> bool | None:
    path = bundle.root / "evaluate" / "verdict.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if isinstance(data, dict) and isinstance(data.get("passed"), bool):
            return bool(data["passed"])
    result = bundle.read("evaluate")
    return None if result is None else result.status == "pass"


def _scan_attachment(record: ModelVersion) -> bool | None:
    scan = record.attachments.get("scan")
    if isinstance(scan, dict):
        if isinstance(scan.get("passed"), bool):
            return bool(scan["passed"])
        if "status" in scan:
            return bool(scan["status"] == "pass")
    if isinstance(scan, str):
        return scan == "pass"
    return None


def resolve_release(
    loaded: LoadedConfig, bundle: Bundle, registry: ModelRegistry, wanted: str | None
) -> Release:
    """The release to deploy: `wanted`, else the run folder's release, else the newest one."""
    in_bundle = _bundle_release(bundle)
    version: str
    image: str | None = None
    from_bundle = False
    if wanted:
        version = wanted
        if in_bundle and in_bundle[0] == wanted:
            image, from_bundle = in_bundle[1], True
    elif in_bundle:
        version, image = in_bundle
        from_bundle = True
    else:
        released = [v for v in registry.versions() if v.image_digest]
        if not released:
            raise UserInputError(
                f"there is no release to deploy: no release/result.json in {bundle.root} and "
                f"no version with an image in the model registry ({registry.location})",
                hint="run `mlcd release` first, or pass --release VERSION",
            )
        version = released[-1].version
    record = registry.get(version)  # exit 2 naming the versions there are
    if image is None:
        image = _image_of(record, loaded.config.image_name)
    if image is None:
        raise UserInputError(
            f"version {version} has no released image (no image_digest in the registry)",
            hint=f"run `mlcd release` for {version}, or deploy a released version",
        )
    if from_bundle:
        evaluate_passed = _verdict_file(bundle)
        evaluate_source = f"{bundle.root}/evaluate"
        scan = bundle.read("scan")
        scan_passed = None if scan is None else scan.status == "pass"
        scan_source = f"{bundle.root}/scan/result.json"
        if scan_passed is None:
            scan_passed, scan_source = _scan_attachment(record), "the model registry"
        if evaluate_passed is None and record.verdict is not None:
            evaluate_passed = bool(record.verdict.get("passed"))
            evaluate_source = "the model registry"
    else:
        evaluate_passed = None if record.verdict is None else bool(record.verdict.get("passed"))
        evaluate_source = "the model registry"
        scan_passed, scan_source = _scan_attachment(record), "the model registry"
    deployments = record.attachments.get(DEPLOYMENTS, [])
    return Release(
        version=version,
        image=image,
        evaluate_passed=evaluate_passed,
        evaluate_source=evaluate_source,
        scan_passed=scan_passed,
        scan_source=scan_source,
        deployments=[d for d in deployments if isinstance(d, dict)],
    )


def check(release: Release, env: str, requires: list[str]) -> GateReport:
    reasons: list[str] = [f"release {release.version} exists with image {release.image}"]
    failures: list[str] = []
    if release.evaluate_passed is True:
        reasons.append(f"evaluation verdict passed ({release.evaluate_source})")
    elif release.evaluate_passed is False:
        failures.append(
            f"evaluation verdict of {release.version} failed ({release.evaluate_source})"
        )
    else:
        failures.append(f"no evaluation verdict for {release.version} (run `mlcd evaluate`)")
    if release.scan_passed is True:
        reasons.append(f"scan passed ({release.scan_source})")
    elif release.scan_passed is False:
        failures.append(f"scan of {release.version} failed ({release.scan_source})")
    else:
        failures.append(f"no scan result for {release.version} (run `mlcd scan`)")
    for needed in requires:
        if any(d.get("env") == needed and d.get("status") == HEALTHY for d in release.deployments):
            reasons.append(f"{release.version} was live and healthy in {needed}")
        else:
            failures.append(
                f"{env} requires {needed}: release {release.version} has never been live and "
                f"healthy in {needed} (deploy it there first: mlcd deploy {needed})"
            )
    return GateReport(passed=not failures, reasons=reasons, failures=failures)


def record_deployment(
    registry: ModelRegistry,
    version: str,
    env: str,
    *,
    strategy: str,
    image: str,
    champion: bool,
) -> None:
    """Attach `{env, status: healthy, …}` to the version; move `champion` when asked."""
    registry.append(
        version,
        DEPLOYMENTS,
        {"env": env, "status": HEALTHY, "at": utc_now(), "strategy": strategy, "image": image},
    )
    if champion:
        registry.set_alias(CHAMPION, version)


__all__ = ["Release", "check", "open_registry", "record_deployment", "resolve_release"]

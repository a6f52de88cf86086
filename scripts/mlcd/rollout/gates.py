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

import contextlib
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcd import releases
from mlcd.config import LoadedConfig
from mlcd.contracts import ReleaseDetails, details, verdict_file
from mlcd.environment import Environment
from mlcd.errors import UserInputError
from mlcd.evidence import Bundle, utc_now
from mlcd.registry import CHAMPION, DEPLOYMENTS, ModelRegistry, ModelVersion, open_registry
from mlcd.rollout.judge import ExpectedPredictions

HEALTHY = "healthy"


@dataclass
class Release:
    """What a rollout needs to know about a release."""

    version: str  # the release version (0.1.0, …), or a model version released the old way
    image: str
    model_version: str
    evaluate_passed: bool | None
    evaluate_source: str
    scan_passed: bool | None
    scan_source: str
    deployments: list[dict[str, Any]] = field(default_factory=list)
    # evaluate's `prediction_shift` (evaluation/shift.py): the change the judge expects
    prediction_shift: dict[str, Any] | None = None


@dataclass
class GateReport:
    passed: bool
    reasons: list[str]
    failures: list[str]


def _bundle_release(bundle: Bundle) -> ReleaseDetails | None:
    result = bundle.read("release")
    if result is None or result.status != "pass":
        return None
    release = details(result, ReleaseDetails)
    if not release.version or not release.image:
        return None
    return release


def _image_of(record: ModelVersion, image_name: str) -> str | None:
    digest = record.image_digest
    if not digest:
        return None
    if "@" in digest:
        return digest
    bare = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    return f"{image_name}@{bare}"


def _verdict_data(data: Any) -> bool | None:
    if isinstance(data, dict) and isinstance(data.get("passed"), bool):
        return bool(data["passed"])
    return None


def _status_data(data: Any) -> bool | None:
    if isinstance(data, dict) and data.get("status") in ("pass", "fail", "error", "skipped"):
        return bool(data["status"] == "pass")
    return None


def _from_bundle(bundle: Bundle) -> tuple[bool | None, bool | None]:
    path = verdict_file(bundle)
    evaluate: bool | None = None
    if path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            evaluate = _verdict_data(json.loads(path.read_text("utf-8")))
    if evaluate is None:
        result = bundle.read("evaluate")
        evaluate = None if result is None else result.status == "pass"
    scan = bundle.read("scan")
    return evaluate, (None if scan is None else scan.status == "pass")


def _shift_doc(data: Any) -> dict[str, Any] | None:
    if isinstance(data, dict) and isinstance(data.get("prediction_shift"), dict):
        return dict(data["prediction_shift"])
    return None


def _bundle_shift(bundle: Bundle) -> dict[str, Any] | None:
    path = verdict_file(bundle)
    if not path.is_file():
        return None
    try:
        return _shift_doc(json.loads(path.read_text("utf-8")))
    except (OSError, json.JSONDecodeError):
        return None


def _open_evidence(source: Path | bytes) -> tarfile.TarFile:
    """A release's evidence bundle from its file or its bytes (a GitHub release's asset)."""
    if isinstance(source, bytes):
        return tarfile.open(fileobj=io.BytesIO(source), mode="r:gz")
    return tarfile.open(source, "r:gz")


def _evidence_shift(tarball: Path | bytes) -> dict[str, Any] | None:
    try:
        with _open_evidence(tarball) as archive:
            handle = archive.extractfile("evidence/evaluate/verdict.json")
            if handle is None:
                return None
            with handle:
                return _shift_doc(json.loads(handle.read().decode("utf-8")))
    except (OSError, KeyError, tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _buckets(raw: Any) -> tuple[tuple[float, int], ...]:
    out: list[tuple[float, int]] = []
    if not isinstance(raw, list):
        return ()
    for item in raw:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            return ()
        bound, count = item
        try:
            value = math.inf if bound in ("+Inf", "Inf", "inf") else float(bound)
            out.append((value, int(count)))
        except (TypeError, ValueError):
            return ()
    return tuple(sorted(out))


def _classes(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def expected_predictions(doc: dict[str, Any] | None) -> ExpectedPredictions | None:
    """The judge's form of evaluate's `prediction_shift` (None when evaluation has none)."""
    if not doc:
        return None
    mine = _dict(doc.get("candidate"))
    theirs = _dict(doc.get("champion"))
    raw_shift = _dict(doc.get("shift"))
    shift = {
        str(k): float(v)
        for k, v in raw_shift.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }
    version = doc.get("champion_version")
    return ExpectedPredictions(
        shift=shift,
        candidate_classes=_classes(mine.get("classes")),
        candidate_scores=_buckets(mine.get("scores")),
        champion_classes=_classes(theirs.get("classes")),
        champion_scores=_buckets(theirs.get("scores")),
        champion=str(version) if version else None,
    )


def _from_evidence(tarball: Path | bytes) -> tuple[bool | None, bool | None]:
    """The verdict and scan result inside a release's evidence bundle (evidence.tar.gz)."""

    def member(archive: tarfile.TarFile, name: str) -> Any:
        try:
            handle = archive.extractfile(f"evidence/{name}")
        except KeyError:
            return None
        if handle is None:
            return None
        with handle:
            try:
                return json.loads(handle.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None

    try:
        with _open_evidence(tarball) as archive:
            evaluate = _verdict_data(member(archive, "evaluate/verdict.json"))
            if evaluate is None:
                evaluate = _status_data(member(archive, "evaluate/result.json"))
            return evaluate, _status_data(member(archive, "scan/result.json"))
    except (OSError, tarfile.TarError):
        return None, None


def _scan_attachment(record: ModelVersion) -> bool | None:
    scan = record.attachments.get("scan")
    if isinstance(scan, dict):
        if isinstance(scan.get("passed"), bool):
            return bool(scan["passed"])
        return _status_data(scan)
    if isinstance(scan, str):
        return scan == "pass"
    return None


# what resolve_release picks before it reads the gates: version, image, model version, and
# the release's evidence bundle when there is one
_Picked = tuple[str, str, str, str | None]


def _newest(loaded: LoadedConfig, bundle: Bundle, registry: ModelRegistry) -> _Picked:
    """The newest release, else the newest model version with an image_digest."""
    newest = releases.latest(registry)
    if newest is not None:
        return newest.version, newest.image, newest.model_version, newest.evidence
    legacy = [v for v in registry.versions() if v.image_digest]
    if not legacy:
        raise UserInputError(
            f"there is no release to deploy: no release/result.json in {bundle.root} "
            f"and no release in the model registry ({registry.location})",
            hint="run `mlcd release` first, or pass --release VERSION",
        )
    record = legacy[-1]
    return record.version, _image_of(record, loaded.config.image_name) or "", record.version, None


def _pick(
    loaded: LoadedConfig,
    bundle: Bundle,
    registry: ModelRegistry,
    wanted: str | None,
    in_bundle: ReleaseDetails | None,
) -> _Picked:
    """`wanted` (a release, or a model version: its newest release), else the run folder's,
    else the newest."""
    if wanted:
        wanted = releases.resolve(registry, wanted)
    if wanted and releases.SEMVER.match(wanted):
        rel = releases.get(registry, wanted)  # exit 2 naming the releases there are
        return rel.version, rel.image, rel.model_version, rel.evidence
    if wanted:
        record = registry.get(wanted)  # exit 2 naming the versions there are
        image_of = _image_of(record, loaded.config.image_name)
        if image_of is None:
            raise UserInputError(
                f"version {wanted} has no released image (no release and no image_digest "
                "in the registry)",
                hint=f"run `mlcd release` for {wanted}, or deploy a released version",
            )
        return wanted, image_of, wanted, None
    if in_bundle is not None:
        version = in_bundle.version
        model_version = in_bundle.model_version or version
        return version, in_bundle.image, model_version, in_bundle.evidence or None
    return _newest(loaded, bundle, registry)


def _gate_results(
    bundle: Bundle,
    record: ModelVersion,
    *,
    from_bundle: bool,
    evidence: str | None,
    archive: Path | bytes | None,
) -> tuple[bool | None, str, bool | None, str]:
    """Did evaluate and scan pass, and who says so: the run folder, the release's evidence
    bundle (its file, or the asset of its GitHub release), else the model registry."""
    if from_bundle:
        evaluate_passed, scan_passed = _from_bundle(bundle)
        evaluate_source = scan_source = f"the run folder {bundle.root}"
    elif archive is not None:
        evaluate_passed, scan_passed = _from_evidence(archive)
        evaluate_source = scan_source = f"the release's evidence bundle {evidence}"
    else:
        evaluate_passed = scan_passed = None
        evaluate_source = scan_source = "the model registry"
    if evaluate_passed is None and record.verdict is not None:
        evaluate_passed = _verdict_data(record.verdict)
        evaluate_source = "the model registry"
    if scan_passed is None:
        scan_passed = _scan_attachment(record)
        scan_source = "the model registry"
    return evaluate_passed, evaluate_source, scan_passed, scan_source


def _evidence_of(
    registry: ModelRegistry, version: str, evidence: str | None
) -> Path | bytes | None:
    """The release's evidence bundle: its file, else what the registry keeps (the `github`
    backend: the GitHub release's asset, checked against the recorded digest)."""
    if not evidence:
        return None
    if Path(evidence).is_file():
        return Path(evidence)
    if not releases.SEMVER.match(version):
        return None
    try:
        return releases.evidence_archive(registry, version)
    except UserInputError:  # a model version standing for a release of itself
        return None


def resolve_release(
    loaded: LoadedConfig, bundle: Bundle, registry: ModelRegistry, wanted: str | None
) -> Release:
    """The release to deploy: `wanted`, else the run folder's release, else the newest one.

    Releases are the model registry's (`mlcd.releases`: a semantic version, its image by
    digest, its model version and its evidence bundle); a model version with an
    `image_digest` attachment and no release record is accepted as a release of itself.
    """
    in_bundle = _bundle_release(bundle)
    version, image, model_version, evidence = _pick(loaded, bundle, registry, wanted, in_bundle)
    record = registry.get(model_version)
    from_bundle = in_bundle is not None and in_bundle.version == version
    archive = None if from_bundle else _evidence_of(registry, version, evidence)
    evaluate_passed, evaluate_source, scan_passed, scan_source = _gate_results(
        bundle, record, from_bundle=from_bundle, evidence=evidence, archive=archive
    )
    if from_bundle:
        moved = _bundle_shift(bundle)
    elif archive is not None:
        moved = _evidence_shift(archive)
    else:
        moved = None
    if moved is None:
        moved = _shift_doc(record.verdict)
    deployments = [
        d
        for d in record.attachments.get(DEPLOYMENTS, [])
        if isinstance(d, dict) and (d.get("release") == version or d.get("image") == image)
    ]
    return Release(
        version=version,
        image=image,
        model_version=model_version,
        evaluate_passed=evaluate_passed,
        evaluate_source=evaluate_source,
        scan_passed=scan_passed,
        scan_source=scan_source,
        deployments=deployments,
        prediction_shift=moved,
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
    release: Release,
    env: str,
    *,
    strategy: str,
    champion: bool,
) -> None:
    """Append `{env, status: healthy, release, image, …}` to the model version's
    `deployments`; point `champion` at the model version when asked (production)."""
    registry.append(
        release.model_version,
        DEPLOYMENTS,
        {
            "env": env,
            "status": HEALTHY,
            "at": utc_now(),
            "strategy": strategy,
            "release": release.version,
            "image": release.image,
        },
    )
    if champion:
        registry.set_alias(CHAMPION, release.model_version)


def record_live(
    loaded: LoadedConfig,
    environment: Environment,
    release: Release,
    strategy: str,
    registry: ModelRegistry | None = None,
) -> str:
    """The one place a release that went live and healthy is recorded in the model registry
    (every target, every command): its deployment, and the champion alias where the
    environment holds it (`registry.champion-environment`). One line for people."""
    registry = registry or open_registry(loaded)
    record_deployment(
        registry,
        release,
        environment.name,
        strategy=strategy,
        champion=environment.holds_champion,
    )
    return f"recorded {release.version} live and healthy in {environment.name} in the registry" + (
        f"; champion is now model {release.model_version}" if environment.holds_champion else ""
    )


__all__ = [
    "Release",
    "check",
    "expected_predictions",
    "open_registry",
    "record_deployment",
    "record_live",
    "resolve_release",
]

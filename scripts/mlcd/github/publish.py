"""Publishing a run on GitHub: the release with its assets, and deployments per environment."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.contracts import DeployDetails, ReleaseDetails, details
from mlcd.errors import GateFailed, UserInputError
from mlcd.evidence import Bundle, StageResult, write_json_atomic
from mlcd.github.comment import metric_chart, verdict_table
from mlcd.tools.github import GitHub, deployment_payload

FOLDER = "github"
MAX_ARCHIVED_FILE = 50 * 1024 * 1024
_CONTENT_TYPES = {
    ".md": "text/markdown",
    ".json": "application/json",
    ".sarif": "application/sarif+json",
    ".gz": "application/gzip",
    ".csv": "text/csv",
    ".txt": "text/plain",
}


def content_type(path: Path) -> str:
    if path.name.endswith((".cdx.json", ".cyclonedx.json")):
        return "application/vnd.cyclonedx+json"
    if path.name.endswith(".spdx.json"):
        return "application/spdx+json"
    return _CONTENT_TYPES.get(path.suffix, "application/octet-stream")


def release_tag(project: str, version: str) -> str:
    """The git tag of a model release: `<project>-v<version>` (no double v)."""
    version = version.strip()
    return f"{project}-{version}" if version[:1] in ("v", "V") else f"{project}-v{version}"


@dataclass(frozen=True)
class ReleaseFacts:
    """What `mlcd release` recorded: the version and the image by digest."""

    project: str
    version: str
    image: str
    result: StageResult | None = None

    @property
    def tag(self) -> str:
        # not details["tag"]: that is the image's tag (name:version), which is no git tag
        return release_tag(self.project, self.version)


def release_facts(bundle: Bundle, project: str, *, by: str) -> ReleaseFacts:
    result = bundle.require("release", by=by)
    if result.status != "pass":
        raise UserInputError(
            f"the release stage in {bundle.root} did not pass ({result.status}: {result.summary})",
            hint="only a passed `mlcd release` can be published or deployed",
        )
    release = details(result, ReleaseDetails)
    version, image = release.version, release.image
    if not version or not image:
        raise UserInputError(
            f"{bundle.root}/release/result.json lacks details.version or details.image",
            hint="re-run `mlcd release` with this version of mlcd",
        )
    return ReleaseFacts(project, str(version), str(image), result)


def deploy_facts(bundle: Bundle, project: str, environment: str) -> ReleaseFacts | None:
    """The release a deploy to `environment` rolled out, from `deploy-<env>/result.json`."""
    result = bundle.read(f"deploy-{environment}")
    if result is None:
        return None
    deployed = details(result, DeployDetails)
    version, image = deployed.version, deployed.image
    if not version or not image:
        return None
    return ReleaseFacts(project, str(version), str(image), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _verdict_checks(bundle: Bundle) -> list[dict[str, Any]]:
    data = _read_json(bundle.root / "evaluate" / "verdict.json")
    checks = data.get("checks") if isinstance(data, dict) else None
    return [c for c in checks or [] if isinstance(c, dict)]


def model_card(bundle: Bundle, facts: ReleaseFacts) -> str:
    """A model card from the bundle: what was trained on what, how it scored, what ships."""
    meta = _read_json(bundle.root / "train" / "model.json")
    meta = meta if isinstance(meta, dict) else {}
    evaluate = bundle.read("evaluate")
    lines = [f"# Model card: {facts.project} {facts.version}", ""]
    lines += [f"- image: `{facts.image}`"]
    for key in ("task", "target", "rows", "data_sha256", "fingerprint", "git_sha"):
        if key in meta:
            lines.append(f"- {key.replace('_', ' ')}: `{meta[key]}`")
    if isinstance(meta.get("params"), dict):
        lines.append(f"- params: `{json.dumps(meta['params'], sort_keys=True)}`")
    features = meta.get("features")
    if isinstance(features, list) and features:
        names = [str(f.get("name")) for f in features if isinstance(f, dict)]
        lines.append(f"- features ({len(names)}): {', '.join(names[:40])}")
    versions = meta.get("versions")
    if isinstance(versions, dict):
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    checks = _verdict_checks(bundle)
    if evaluate is not None:
        lines += ["", "## Evaluation", "", f"{evaluate.summary}", ""]
        lines += verdict_table(checks)
        chart = metric_chart(evaluate.metrics, checks)
        if chart:
            lines += ["", *chart]
    scan = bundle.read("scan")
    if scan is not None:
        lines += ["", "## Scan", "", scan.summary]
    return "\n".join(lines) + "\n"


def evidence_archive(bundle: Bundle, target: Path) -> Path:
    """The bundle as a .tar.gz (without this folder and without files over 50 MB)."""
    root = bundle.root.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if rel.parts[0] == FOLDER or not path.is_file() or path.is_symlink():
                continue
            if path.stat().st_size > MAX_ARCHIVED_FILE or path.suffix == ".tar":
                continue
            archive.add(path, arcname=f"mlcd-evidence/{rel.as_posix()}")
    return target


def _sboms(bundle: Bundle) -> list[Path]:
    scan = bundle.read("scan")
    found: list[Path] = []
    if scan is not None:
        for key, rel in scan.artifacts.items():
            path = bundle.root / rel
            if "sbom" in key.lower() and path.is_file():
                found.append(path)
    if not found and (bundle.root / "scan").is_dir():
        found = sorted(
            p
            for p in (bundle.root / "scan").iterdir()
            if p.is_file() and ("sbom" in p.name.lower() or p.name.endswith(".cdx.json"))
        )
    return found


def release_assets(bundle: Bundle, facts: ReleaseFacts) -> list[tuple[Path, str]]:
    """(file, asset name) pairs: model card, metrics, verdict, SBOM(s), evidence archive, and
    for a signed release its statements, model signature and public key."""
    folder = bundle.stage_dir(FOLDER)
    assets: list[tuple[Path, str]] = []
    card = folder / "model-card.md"
    card.write_text(model_card(bundle, facts), "utf-8")
    assets.append((card, "model-card.md"))
    evaluate = bundle.read("evaluate")
    if evaluate is not None:
        metrics = folder / "metrics.json"
        write_json_atomic(metrics, {"version": facts.version, "metrics": evaluate.metrics})
        assets.append((metrics, "metrics.json"))
    verdict = bundle.root / "evaluate" / "verdict.json"
    if verdict.is_file():
        assets.append((verdict, "verdict.json"))
    assets.extend((sbom, sbom.name) for sbom in _sboms(bundle))
    name = f"evidence-{facts.version}.tar.gz"
    released = facts.result.artifacts.get("evidence") if facts.result is not None else None
    if released and (bundle.root / released).is_file():
        # the archive `mlcd release` stored, whose sha256 is the release's evidence_digest
        assets.append((bundle.root / released, name))
    else:
        assets.append((evidence_archive(bundle, folder / name), name))
    # signed releases (docs/signing.md): the image's statements, the model signature, the key
    artifacts = facts.result.artifacts if facts.result is not None else {}
    for key, asset in (
        ("attestation", "attestation.intoto.json"),
        ("model_signature", "model.sig"),
        ("public_key", "signing.pub"),
    ):
        stored = artifacts.get(key)
        if stored and (bundle.root / stored).is_file():
            assets.append((bundle.root / stored, asset))
    return assets


def release_body(bundle: Bundle, facts: ReleaseFacts, run_url: str) -> str:
    lines = [
        f"Model **{facts.project} {facts.version}**, image `{facts.image}`.",
        "",
        "Pull by digest; every asset below is addressed by this release.",
    ]
    checks = _verdict_checks(bundle)
    if checks:
        lines += ["", *verdict_table(checks)]
    if run_url:
        lines += ["", f"Built by [this workflow run]({run_url})."]
    lines += [
        "",
        "<!-- mlcd-release "
        + json.dumps(
            {"version": facts.version, "image": facts.image, "project": facts.project},
            sort_keys=True,
        )
        + " -->",
    ]
    return "\n".join(lines) + "\n"


def _versioned(name: str, version: str) -> str:
    """`model-card.md` → `model-card-0.1.3.md`: assets of one release among a model version's."""
    if version in name:
        return name
    for suffix in (".cdx.json", ".spdx.json", ".tar.gz"):
        if name.endswith(suffix):
            return f"{name[: -len(suffix)]}-{version}{suffix}"
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{version}.{ext}" if dot else f"{name}-{version}"


def publish_release(
    gh: GitHub,
    bundle: Bundle,
    facts: ReleaseFacts,
    *,
    sha: str,
    run_url: str,
    latest: bool = False,
    onto: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish the release's assets on GitHub: onto `onto` (the model version's own GitHub
    release, when the registry keeps versions there: one GitHub release per model version,
    this release's assets named by its version), else on the release of the version's tag,
    created never `Latest` unless `latest` (registry.github-latest)."""
    if onto is not None:
        release: dict[str, Any] = dict(onto)
    else:
        release = gh.create_release(
            facts.tag,
            name=f"{facts.project} {facts.version}",
            body=release_body(bundle, facts, run_url),
            target_commitish=sha if len(sha) == 40 else None,
            make_latest=latest,
        )
        if facts.image not in str(release.get("body") or ""):
            raise GateFailed(
                f"the GitHub release {facts.tag} exists for another image; a release is never "
                "overwritten",
                hint="mlcd release takes a version atomically; release again for the next one",
            )
    uploaded = []
    for path, name in release_assets(bundle, facts):
        asset_name = _versioned(name, facts.version) if onto is not None else name
        asset = gh.upload_asset(release, path, name=asset_name, content_type=content_type(path))
        uploaded.append(
            {
                "name": asset.get("name"),
                "size": asset.get("size"),
                "url": asset.get("browser_download_url"),
            }
        )
    record = {
        "id": release.get("id"),
        "tag": str(release.get("tag_name") or facts.tag),
        "html_url": release.get("html_url"),
        "version": facts.version,
        "image": facts.image,
        "assets": uploaded,
    }
    write_json_atomic(bundle.stage_dir(FOLDER) / "release.json", record)
    return record


# ---------------------------------------------------------------------- deployments

DEPLOYMENT_STATES = ("in_progress", "queued", "pending", "success", "failure", "error", "inactive")


def _deployment_record(bundle: Bundle, environment: str) -> Path:
    return bundle.stage_dir(FOLDER) / f"deployment-{environment}.json"


def environment_url(bundle: Bundle, environment: str) -> str | None:
    """The environment's address that `mlcd deploy ENV` recorded in `deploy-<env>/`."""
    deploy = bundle.read(f"deploy-{environment}")
    if deploy is None:
        return None
    return details(deploy, DeployDetails).http_url


def last_event(bundle: Bundle, environment: str) -> str | None:
    """The last rollout event `mlcd deploy ENV` told its webhooks (the same words go on the
    deployment's final status), None when it recorded none."""
    deploy = bundle.read(f"deploy-{environment}")
    if deploy is None:
        return None
    events = details(deploy, DeployDetails).notifications.get("events") or []
    last = events[-1] if isinstance(events, list) and events else None
    return str(last["summary"]) if isinstance(last, dict) and last.get("summary") else None


def record_deployment(
    gh: GitHub,
    bundle: Bundle,
    facts: ReleaseFacts,
    *,
    environment: str,
    state: str,
    sha: str,
    run_url: str,
    production: bool,
    url: str | None = None,
) -> dict[str, Any]:
    """Create the environment's deployment (first call) and post `state` on it."""
    path = _deployment_record(bundle, environment)
    record = _read_json(path)
    if not isinstance(record, dict) or record.get("version") != facts.version:
        deployment = gh.create_deployment(
            ref=sha or facts.tag,
            environment=environment,
            description=f"{facts.project} {facts.version}",
            payload={
                "project": facts.project,
                "version": facts.version,
                "image": facts.image,
                "release_tag": facts.tag,
                "run_url": run_url,
            },
            production=production,
        )
        record = {
            "id": deployment["id"],
            "environment": environment,
            "version": facts.version,
            "image": facts.image,
            "states": [],
        }
    description = f"{facts.project} {facts.version}: {state.replace('_', ' ')}"
    if state in ("success", "failure", "error"):
        description = last_event(bundle, environment) or description
    status = gh.create_deployment_status(
        int(record["id"]),
        state=state,
        description=description,
        environment_url=url or environment_url(bundle, environment),
        log_url=run_url or None,
    )
    record["states"] = [*record.get("states", []), state]
    record["status_id"] = status.get("id")
    write_json_atomic(path, record)
    if state == "success":
        retire_previous(gh, environment, project=facts.project, current=int(record["id"]))
    return record


def retire_previous(gh: GitHub, environment: str, *, project: str, current: int) -> int | None:
    """Mark this project's previous live deployment to `environment` inactive, as GitHub's
    `auto_inactive` would, but leaving other projects' deployments to the same environment
    name alone. Deployments come newest first and at most one earlier one is live, so the walk
    stops at the first earlier deployment of the project that went live. Returns its id."""
    for deployment in gh.deployments(environment=environment):
        if int(deployment["id"]) == current:
            continue
        if deployment_payload(deployment).get("project") not in (None, project):
            continue
        states = [s.get("state") for s in gh.deployment_statuses(int(deployment["id"]))]
        if "success" not in states:
            continue  # never went live (failed, or still running elsewhere)
        if states[0] == "success":
            gh.create_deployment_status(
                int(deployment["id"]),
                state="inactive",
                description=f"{project}: replaced by deployment {current}",
            )
            return int(deployment["id"])
        return None
    return None

"""Publishing a run on GitHub: the release with its assets, and deployments per environment."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd.errors import UserInputError
from mlcd.evidence import Bundle, StageResult, write_json_atomic
from mlcd.github.comment import metric_chart, verdict_table
from mlcd.tools.github import GitHub

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
    result: StageResult

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
    version = result.details.get("version")
    image = result.details.get("image")
    if not version or not image:
        raise UserInputError(
            f"{bundle.root}/release/result.json lacks details.version or details.image",
            hint="re-run `mlcd release` with this version of mlcd",
        )
    return ReleaseFacts(project, str(version), str(image), result)


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
    """(file, asset name) pairs: model card, metrics, verdict, SBOM(s), evidence archive."""
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
    released = facts.result.artifacts.get("evidence")
    if released and (bundle.root / released).is_file():
        # the archive `mlcd release` stored, whose sha256 is the release's evidence_digest
        assets.append((bundle.root / released, name))
    else:
        assets.append((evidence_archive(bundle, folder / name), name))
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


def publish_release(
    gh: GitHub, bundle: Bundle, facts: ReleaseFacts, *, sha: str, run_url: str
) -> dict[str, Any]:
    """Create (or find) the release for the version and upload its assets."""
    release = gh.create_release(
        facts.tag,
        name=f"{facts.project} {facts.version}",
        body=release_body(bundle, facts, run_url),
        target_commitish=sha if len(sha) == 40 else None,
    )
    uploaded = []
    for path, name in release_assets(bundle, facts):
        asset = gh.upload_asset(release, path, name=name, content_type=content_type(path))
        uploaded.append(
            {
                "name": asset.get("name"),
                "size": asset.get("size"),
                "url": asset.get("browser_download_url"),
            }
        )
    record = {
        "id": release.get("id"),
        "tag": facts.tag,
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


def environment_url(bundle: Bundle) -> str | None:
    deploy = bundle.read("deploy")
    if deploy is None:
        return None
    for key in ("url", "endpoint", "router_url", "environment_url"):
        value = deploy.details.get(key)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None


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
    status = gh.create_deployment_status(
        int(record["id"]),
        state=state,
        description=f"{facts.project} {facts.version}: {state.replace('_', ' ')}",
        environment_url=url or environment_url(bundle),
        log_url=run_url or None,
    )
    record["states"] = [*record.get("states", []), state]
    record["status_id"] = status.get("id")
    write_json_atomic(path, record)
    return record


def payload_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    payload = deployment.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {}
    return payload if isinstance(payload, dict) else {}

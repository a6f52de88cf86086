"""`mlcd release`: push the built image by digest, record the release, keep the evidence.

1. Gates: the build passed (its contract test included); evaluate and scan, when they ran,
   passed. The release belongs to the model version evaluate registered; when evaluate ran
   with --no-register (the GitHub workflow does, so that pull requests never write to the
   registry), release registers the evaluated model itself, as evaluate would have.
2. The same image released before? Then that release is the answer (exit 0).
3. The version: `--version`, or the next patch after the highest release; an existing
   version is never reused, in the model registry or as a tag in the image registry.
4. The evidence bundle (this run's folder, without the build context) as a reproducible
   tar.gz; its sha256 is the evidence digest.
5. `docker push name:VERSION`; the registry's digest gives `name@sha256:…`, which is
   pulled back to prove the registry serves it by digest.
6. With `signing:` on, the model and the pushed image are signed and the signatures
   stored beside the image (`mlcd.signing.sign`) before the release is recorded, so that no
   release exists unsigned; with `signing: off` every summary says so.
7. The model registry records version, image digest and evidence digest (`mlcd.releases`);
   the local backend also stores the bundle beside the version.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mlcd import evaluation, releases, signing
from mlcd.context import Command, Context
from mlcd.contracts import (
    BuildDetails,
    EvaluateDetails,
    ReleaseDetails,
    details,
    train_files,
    verdict_file,
)
from mlcd.errors import GateFailed, UserInputError
from mlcd.evidence import StageOutcome, StageResult, utc_now, write_json_atomic
from mlcd.registry import (
    EVIDENCE_DIGEST,
    IMAGE_DIGEST,
    ModelRegistry,
    open_registry,
)
from mlcd.signing import sign as signer
from mlcd.tools import docker
from mlcd.tools import registry as oci
from mlcd.tools.git import head_sha

STAGE = "release"
_EXCLUDE_TOP = {"release"}
_EXCLUDE_PATHS = ("build/context",)


def evidence_tarball(bundle_root: Path, target: Path) -> str:
    """A byte-reproducible tar.gz of the bundle; returns its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(bundle_root.rglob("*")):
            rel = path.relative_to(bundle_root).as_posix()
            if rel.split("/")[0] in _EXCLUDE_TOP or any(
                rel == p or rel.startswith(p + "/") for p in _EXCLUDE_PATHS
            ):
                continue
            if not path.is_file() or path.is_symlink():
                continue
            info = tarfile.TarInfo(f"evidence/{rel}")
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as zipped:
        zipped.write(buffer.getvalue())
    content = packed.getvalue()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _gates(ctx: Context) -> tuple[BuildDetails, str | None]:
    build = ctx.bundle.require("build", by=STAGE)
    if build.status != "pass":
        raise GateFailed(f"the build did not pass, so there is nothing to release: {build.summary}")
    built = details(build, BuildDetails, strict=True)
    if built.contract.skipped:
        raise GateFailed(
            "the build skipped its contract test (--skip-contract); a release needs it",
            hint="run `mlcd build` without --skip-contract",
        )
    for name in ("evaluate", "scan"):
        result = ctx.bundle.read(name)
        if result is not None and result.status != "pass":
            raise GateFailed(f"{name} did not pass ({result.summary}); nothing is released")
    evaluate = ctx.bundle.require("evaluate", by=STAGE)
    model_version = details(evaluate, EvaluateDetails, strict=True).model_version
    return built, str(model_version) if model_version else None


def _register(ctx: Context, registry: ModelRegistry) -> tuple[str, str]:
    """Register the evaluated model (evaluate ran with --no-register): the model, metadata,
    metrics and verdict of this run folder, as evaluate registers them."""
    evaluate = ctx.bundle.require("evaluate", by=STAGE)
    files = train_files(ctx.bundle)
    model_path, meta_path = files.model, files.meta
    verdict_path = verdict_file(ctx.bundle)
    for path in (model_path, meta_path, verdict_path):
        if not path.is_file():
            raise UserInputError(
                f"{path} is missing, so the evaluated model cannot be registered",
                hint="run `mlcd train` and `mlcd evaluate` with the same --out first",
            )
    verdict = json.loads(verdict_path.read_text("utf-8"))
    if not verdict.get("passed"):
        raise GateFailed(f"the evaluation verdict did not pass ({evaluate.summary})")
    done = evaluation.register_candidate(
        registry=registry,
        model_path=model_path,
        meta=json.loads(meta_path.read_text("utf-8")),
        metrics=evaluate.metrics,
        verdict=verdict,
        folder=ctx.bundle.root / "evaluate",
    )
    how = (
        f"registered the evaluated model as {done['version']} (evaluate ran with --no-register)"
        if done["registered"]
        else f"evaluate did not register the model; {done['reason']}"
    )
    return str(done["version"]), how


def _already(release: releases.Release, wanted: str | None) -> StageOutcome:
    if wanted and wanted != release.version:
        raise UserInputError(
            f"this image is already release {release.version}; it cannot also be {wanted}",
            hint="a release is one image; rebuild to release something new",
        )
    summary = f"already released as {release.version} ({release.image})"
    return StageOutcome(
        status="pass",
        summary=summary,
        reasons=[
            f"image {release.image_id} was released as {release.version} on {release.released}",
            f"model version {release.model_version}; evidence {release.evidence_digest}",
        ],
        details=ReleaseDetails.model_validate({**release.to_json(), "existing": True}).dump(),
        markdown=f"### ✅ release: {summary}\n",
    )


_MAX_SKIPPED = 100


def _take_version(
    ctx: Context,
    registry: ModelRegistry,
    name: str,
    known: list[releases.Release],
    wanted: str | None,
    *,
    image_id: str = "",
) -> tuple[str, list[str]]:
    """The release version, taken atomically (`registry.claim_release`) before anything is
    pushed: `wanted`, or the next patch after the highest release. An automatic version that
    is taken (by a release job running at the same time, or as an image tag this registry
    does not know) moves on to the next patch; a taken `wanted` is an error. A version is
    never overwritten. A version whose tag already holds this very image (`image_id`), with
    no release recorded, is the one an interrupted release of this image pushed: when its
    claim's process is gone (`registry.reclaim_release`) it is taken again, so that the
    interruption leaves no orphan tag and no gap (`_pushed_as`); a claim whose process is
    gone with nothing pushed is taken over too.
    Returns the version and the ones skipped, with why."""
    version = wanted or releases.next_version(registry, known=known)
    releases.parse_version(version)
    recorded = {release.version: release for release in known}
    skipped: list[str] = []
    commit = head_sha(ctx.loaded.root)
    for _attempt in range(_MAX_SKIPPED):
        if version in recorded:
            why = f"release {version} exists already ({recorded[version].image})"
        elif (tagged := oci.tag_digest(name, version)) is not None:
            if _pushed_as(image_id, name, tagged) and registry.reclaim_release(
                version, commit=commit
            ):
                ctx.progress(f"resuming release {version}: {name}:{version} is this image")
                return version, skipped
            why = (
                f"the image registry already has {name}:{version} ({tagged}), which this model "
                f"registry ({registry.location}) does not know"
            )
        elif registry.claim_release(version, commit=commit) or registry.reclaim_release(
            version, commit=commit
        ):
            return version, skipped
        else:
            why = f"another release took {version} first ({registry.location})"
        if wanted:
            raise UserInputError(
                f"{why}; a version is never overwritten",
                hint=f"leave out --version for the next free patch after {version}",
            )
        skipped.append(f"{version} ({why})")
        version = releases.bump(version)
    raise UserInputError(
        f"no free release version after {len(skipped)} tries (the last: {skipped[-1]})",
        hint="pass --version with an unused version",
    )


def _pushed_as(image_id: str, name: str, manifest: str) -> bool:
    """Whether this engine pushed (or pulled) image `image_id` as `name@manifest`: the
    release that pushed it was interrupted before it recorded the release."""
    if not image_id:
        return False
    found = docker.inspect_image(image_id)
    return found is not None and f"{name}@{manifest}" in (found.get("RepoDigests") or [])


@dataclass(frozen=True)
class _Candidate:
    """What is to be released, checked: the built image and its model version."""

    registry: ModelRegistry
    image_id: str
    name: str
    model_version: str | None
    known: list[releases.Release]


@dataclass(frozen=True)
class _Published:
    version: str
    model_version: str
    registered_how: str
    skipped: list[str]
    ref: str
    manifest: str
    tarball: Path
    record: releases.Release
    signed: signer.Signed | None = None


def _signing_note(ctx: Context) -> list[str]:
    """The line every summary carries when signing is off."""
    if ctx.config.signing_on is not None:
        return []
    return [signing.off_note(ctx.config.signing is not None)]


def _candidate(ctx: Context) -> _Candidate:
    build, model_version = _gates(ctx)
    registry = open_registry(ctx.loaded)
    if model_version is not None:
        registry.get(model_version)  # exit 2 if the registry lost it
    image_id = build.image_id
    if not image_id:
        raise UserInputError(f"{ctx.bundle.root}/build/result.json lacks details.image_id")
    name = build.name or ctx.config.image_name
    ctx.progress("checking the Docker engine")
    docker.ping()
    if docker.inspect_image(image_id) is None:
        raise UserInputError(
            f"the built image {image_id[:19]}… is not on this Docker engine",
            hint="run `mlcd build` again with the same --out",
        )
    known = releases.all_releases(registry)  # the registry, listed once for this command
    return _Candidate(registry, image_id, name, model_version, known)


def _publish(ctx: Context, cand: _Candidate, wanted: str | None) -> _Published:
    """Take the version, pack the evidence, push and pull back by digest, record."""
    registry = cand.registry
    started = utc_now()
    section = ctx.config.signing_on
    if section is not None:
        signer.check_signable(section)
    registered_how = ""
    model_version = cand.model_version
    if model_version is None:
        model_version, registered_how = _register(ctx, registry)
    version, skipped = _take_version(
        ctx, registry, cand.name, cand.known, wanted, image_id=cand.image_id
    )
    ctx.progress("packing the evidence bundle")
    tarball = ctx.bundle.stage_dir(STAGE) / "evidence.tar.gz"
    evidence_digest = evidence_tarball(ctx.bundle.root, tarball)
    ref = f"{cand.name}:{version}"
    ctx.progress(f"docker push {ref}")
    docker.tag(cand.image_id, ref)
    manifest = docker.push(ref)
    image = f"{cand.name}@{manifest}"
    ctx.progress(f"docker pull {image} (by digest)")
    docker.pull(image)
    signed = None
    if section is not None:
        ctx.progress(f"signing the model and {image}")
        signed = signer.sign_release(
            ctx.loaded,
            ctx.bundle,
            section,
            ctx.bundle.stage_dir(STAGE),
            name=cand.name,
            digest=manifest,
            version=version,
            model_version=model_version,
            image_id=cand.image_id,
            evidence_digest=evidence_digest,
            base_image=ctx.config.image.base,
            started=started,
        )
    record = releases.Release(
        version=version,
        model_version=model_version,
        image=image,
        image_id=cand.image_id,
        evidence_digest=evidence_digest,
        evidence=registry.keep_evidence(version, tarball),
        released=utc_now(),
    )
    registry.append(model_version, releases.RELEASES, record.to_json())
    model = registry.get(model_version)
    if IMAGE_DIGEST not in model.attachments:
        registry.attach(model_version, IMAGE_DIGEST, image)
    if EVIDENCE_DIGEST not in model.attachments:
        registry.attach(model_version, EVIDENCE_DIGEST, evidence_digest)
    registry.record_release(version, record.to_json())
    return _Published(
        version, model_version, registered_how, skipped, ref, manifest, tarball, record, signed
    )


def _write(ctx: Context, registry: ModelRegistry, done: _Published) -> StageOutcome:
    """release.json and the stage's record."""
    record = done.record
    summary = f"{done.version}: {record.image}"
    skipped = done.skipped
    reasons = [
        f"pushed {done.ref} and pulled it back by digest {done.manifest}",
        *([done.registered_how] if done.registered_how else []),
        *([f"skipped {'; '.join(skipped)} (a version is never overwritten)"] if skipped else []),
        f"model version {done.model_version} in the registry ({registry.location})",
        (
            f"evidence bundle {record.evidence_digest} ({done.tarball.stat().st_size} bytes) "
            f"stored at {record.evidence}"
        ),
        *(done.signed.reasons if done.signed is not None else _signing_note(ctx)),
    ]
    signed = done.signed.details if done.signed is not None else {"mode": "off"}
    details = ReleaseDetails.model_validate(
        {
            **record.to_json(),
            "existing": False,
            "tag": done.ref,
            "registry": registry.location,
            "signing": signed,
        }
    ).dump()
    md = [
        f"### ✅ release {done.version}",
        "",
        "| | |",
        "|---|---|",
        f"| image | `{record.image}` |",
        f"| model version | {done.model_version} |",
        f"| evidence | `{record.evidence_digest}` |",
        (
            f"| signed | key `{signed['key'][:16]}…`, `{signed['attestation_tag']}` |"
            if done.signed is not None
            else "| signed | **no**: signing is off |"
        ),
    ]
    folder = ctx.bundle.stage_dir(STAGE)
    write_json_atomic(folder / "release.json", details)
    signed_files = (
        {
            "model_signature": ctx.bundle.relative(folder / "model.sig"),
            "attestation": ctx.bundle.relative(folder / "attestation.json"),
            "public_key": ctx.bundle.relative(folder / "public.pem"),
        }
        if done.signed is not None
        else {}
    )
    return StageOutcome(
        status="pass",
        summary=summary + ("" if done.signed is not None else " (unsigned: signing is off)"),
        reasons=reasons,
        artifacts={
            "evidence": ctx.bundle.relative(done.tarball),
            "release": ctx.bundle.relative(folder / "release.json"),
            **signed_files,
        },
        details=details,
        markdown="\n".join(md) + "\n",
    )


def _body(ctx: Context, args: argparse.Namespace) -> StageOutcome:
    """Check what is to be released; the same image released before is the answer; else
    publish and write."""
    cand = _candidate(ctx)
    existing = releases.find_by_image(cand.registry, cand.image_id, known=cand.known)
    if existing is not None:
        return _already(existing, args.version)
    return _write(ctx, cand.registry, _publish(ctx, cand, args.version))


def stage(ctx: Context, args: argparse.Namespace | None = None) -> StageResult:
    options = args or argparse.Namespace(version=None)
    return ctx.run_stage(STAGE, lambda: _body(ctx, options))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version",
        default=None,
        help="the release version, MAJOR.MINOR.PATCH (default: next patch; first 0.1.0)",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx, args))


COMMAND = Command(
    name="release",
    help="pushes the image by digest, publishes model + evidence, assigns the version",
    description="Release what `mlcd build` built: check that build (with its contract "
    "test), evaluate and scan passed, assign the version (the next patch unless --version), "
    "push the image and pull it back by digest, and record version, image digest and "
    "evidence digest in the model registry, with the evidence bundle. Releasing the same "
    "image again answers the existing version (exit 0); a version is never overwritten.",
    example="mlcd release --config model/mlcd.yaml\nmlcd release --version 1.0.0 --format json",
    add_arguments=_arguments,
    run=_run,
)

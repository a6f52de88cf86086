"""The verify side: the chain of a release, link by link (`mlcd deploy`, `mlcd verify`).

commit → data → model → verdict → scan → image → environments. Each link is checked
against what the release's signer signed, with the configured public key:
- image: a `.sig` beside the image verifies and names the digest about to run; the `.att`
  statements verify and their subject is that digest;
- evidence: the release's evidence bundle hashes to the digest the statement names;
- verdict and scan: their files in the bundle hash to the statement's, and passed;
- data and commit: the statement's, equal to the bundle's model.json and the provenance;
- model: the model signature verifies, is the one the statement names, and its files are
  the files the image serves (read from the image's layers in the registry);
- environments: every environment the release ran in (and every one `requires:` names)
  recorded the same signed digest.
Nothing here starts a container.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mlcd import releases
from mlcd.config import LoadedConfig, SigningSection
from mlcd.errors import EnvironmentMissing
from mlcd.registry import DEPLOYMENTS, ModelRegistry
from mlcd.signing import dsse, imagefiles, keys, modelsig, statement, store
from mlcd.tools import registry as oci

HEALTHY = "healthy"


@dataclass
class Link:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


@dataclass
class Chain:
    release: str
    image: str
    links: list[Link] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.links) and all(link.ok for link in self.links)

    @property
    def failures(self) -> list[str]:
        return [f"{link.name}: {link.detail}" for link in self.links if not link.ok]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.links.append(Link(name, ok, detail))
        return ok

    def fail(self, name: str, detail: str) -> None:
        self.links.append(Link(name, ok=False, detail=detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "image": self.image,
            "verified": self.ok,
            "links": [{"link": x.name, "ok": x.ok, "detail": x.detail} for x in self.links],
        }


def verifier_key(loaded: LoadedConfig, section: SigningSection) -> ec.EllipticCurvePublicKey:
    if section.verify.key is None:
        raise EnvironmentMissing(
            "signing.verify names a keyless identity "
            f"({section.verify.identity} from {section.verify.issuer}); verifying it needs "
            "Sigstore's public trust root and transparency log, which mlcd does not reach",
            hint="on github.com the deploy job verifies the image's build provenance with `gh "
            "attestation verify`; for mlcd's own checks use a key (signing.verify.key) — "
            "docs/signing.md",
        )
    return keys.public_key(loaded, section)


def _statements(
    chain: Chain, stored: store.Stored, key: ec.EllipticCurvePublicKey, digest: str
) -> dict[str, dict[str, Any]]:
    """The verified statements of `.att` by predicate type, subject checked."""
    found: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for _, envelope in stored.attestations:
        try:
            data = json.loads(dsse.open_envelope(key, envelope))
        except (dsse.EnvelopeError, ValueError) as exc:
            problems.append(str(exc))
            continue
        subjects = statement.subject_digests(data)
        if digest not in subjects:
            named = ", ".join(subjects) or "nothing"
            problems.append(
                f"a statement ({data.get('predicateType')}) is for {named}, not for {digest}"
            )
            continue
        found[str(data.get("predicateType"))] = data
    if not stored.attestations:
        problems.append(
            f"no attestation is stored beside the image ({store.suffix_tag(digest, 'att')})"
        )
    missing = [p for p in (statement.SLSA, statement.MLCD) if p not in found]
    if missing and not problems:
        problems.append("missing statement(s): " + ", ".join(missing))
    if missing:
        chain.fail("statement", "; ".join(problems))
        return {}
    chain.add(
        "statement",
        ok=True,
        detail=f"SLSA provenance and the release statement verify and name {digest}",
    )
    return found


def _evidence(release: releases.Release, registry: ModelRegistry) -> bytes | None:
    if release.evidence and Path(release.evidence).is_file():
        return Path(release.evidence).read_bytes()
    fetch = getattr(registry, "release_asset", None)
    if fetch is None:
        return None
    data = fetch(release.model_version, f"evidence-{release.version}.tar.gz")
    return data if isinstance(data, bytes) else None


def _members(data: bytes) -> dict[str, bytes]:
    wanted = ("evaluate/verdict.json", "scan/result.json", "train/model.json")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in wanted:
            try:
                handle = archive.extractfile(f"evidence/{name}")
            except KeyError:
                continue
            if handle is not None:
                found[name] = handle.read()
    return found


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _evidence_links(
    chain: Chain, predicate: dict[str, Any], release: releases.Release, registry: ModelRegistry
) -> None:
    signed = str(predicate.get("evidence_digest", ""))
    data = _evidence(release, registry)
    if data is None:
        chain.fail("evidence", f"the evidence bundle of {release.version} is not found")
        return
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if not chain.add(
        "evidence",
        actual == signed and release.evidence_digest == signed,
        f"bundle {actual}"
        + ("" if actual == signed else f" is not the signed {signed} (edited after release)")
        + (
            ""
            if release.evidence_digest == signed
            else f"; the registry records {release.evidence_digest}, the statement {signed}"
        ),
    ):
        return
    try:
        members = _members(data)
    except (OSError, tarfile.TarError) as exc:
        chain.fail("evidence", f"the bundle cannot be read ({exc})")
        return
    meta: dict[str, Any] = {}
    if "train/model.json" in members:
        meta = json.loads(members["train/model.json"])
    commit = str(predicate.get("commit", ""))
    chain.add("commit", bool(commit) and commit != "unknown", commit or "not recorded")
    data_sha = str((predicate.get("data") or {}).get("sha256", ""))
    chain.add(
        "data",
        bool(data_sha) and data_sha == str(meta.get("data_sha256", "")),
        f"sha256 {data_sha}"
        + ("" if data_sha == str(meta.get("data_sha256", "")) else " ≠ the bundle's model.json"),
    )
    for link, path, outcome_key, good in (
        ("verdict", "evaluate/verdict.json", "passed", True),
        ("scan", "scan/result.json", "status", "pass"),
    ):
        facts = predicate.get(link) or {}
        actual_sha = _sha(members.get(path))
        same = actual_sha is not None and actual_sha == facts.get("sha256")
        passed = facts.get(outcome_key) == good
        chain.add(
            link,
            same and passed,
            f"{path} sha256 {str(actual_sha)[:16]}…"
            + ("" if same else f" ≠ signed {str(facts.get('sha256'))[:16]}…")
            + f"; {outcome_key} {facts.get(outcome_key)}",
        )


def _model_link(
    chain: Chain, predicate: dict[str, Any], key: ec.EllipticCurvePublicKey, name: str, digest: str
) -> None:
    model = predicate.get("model") or {}
    bundle = model.get("signature")
    if not isinstance(bundle, dict) or modelsig.bundle_digest(bundle) != model.get(
        "signature_digest"
    ):
        chain.fail("model", "the statement's model signature is missing or not the one it names")
        return
    try:
        signed = modelsig.verify(key, bundle)
    except modelsig.ModelSignatureError as exc:
        chain.fail("model", str(exc))
        return
    try:
        served = imagefiles.served_files(name, digest)
    except (oci.RegistryError, OSError, tarfile.TarError) as exc:
        chain.fail("model", f"the image's model files cannot be read: {exc}")
        return
    problems = modelsig.compare(signed, served)
    chain.add(
        "model",
        not problems,
        "; ".join(problems)
        if problems
        else f"{len(signed)} signed files (model signature "
        f"{str(model.get('signature_digest'))[:19]}…) are the files the image serves",
    )


def _environments(
    chain: Chain,
    registry: ModelRegistry,
    release: releases.Release,
    digest: str,
    requires: list[str],
) -> None:
    record = registry.get(release.model_version)
    ran = [
        d
        for d in record.attachments.get(DEPLOYMENTS) or []
        if isinstance(d, dict) and d.get("release") == release.version
    ]
    wrong = [
        f"{d.get('env')} recorded {d.get('image')}"
        for d in ran
        if not str(d.get("image", "")).endswith("@" + digest)
    ]
    missing = [
        env
        for env in requires
        if not any(
            d.get("env") == env
            and d.get("status") == HEALTHY
            and str(d.get("image", "")).endswith("@" + digest)
            for d in ran
        )
    ]
    envs = sorted({str(d.get("env")) for d in ran})
    detail = (
        ("ran in " + ", ".join(envs) if envs else "not deployed yet")
        + (f"; not the signed digest: {'; '.join(wrong)}" if wrong else "")
        + (
            f"; requires {', '.join(missing)}, which never ran the signed {digest}"
            if missing
            else ""
        )
    )
    chain.add("environments", not wrong and not missing, detail)


def verify_release(
    loaded: LoadedConfig,
    section: SigningSection,
    registry: ModelRegistry,
    release: releases.Release,
    *,
    image: str | None = None,
    requires: list[str] | None = None,
) -> Chain:
    """Every link of `release`'s chain; `image` (default: the release's) is what is about
    to run, `requires` the environments that must have run that same signed digest."""
    key = verifier_key(loaded, section)
    target = image or release.image
    name, _, digest = target.partition("@")
    chain = Chain(release.version, target)
    if not digest.startswith("sha256:"):
        chain.fail("image", f"{target} is not an image by digest")
        return chain
    if release.image and release.image != target:
        chain.fail("image", f"release {release.version} is {release.image}, not {target}")
        return chain
    try:
        stored = store.fetch(name, digest)
    except oci.RegistryError as exc:
        raise EnvironmentMissing(f"the registry of {name} cannot be read: {exc}") from exc
    ok, detail = store.verify_signature(stored, key, digest)
    if not chain.add("image", ok, detail):
        return chain
    found = _statements(chain, stored, key, digest)
    if not found:
        return chain
    predicate = found[statement.MLCD].get("predicate") or {}
    rel = predicate.get("release") or {}
    if not chain.add(
        "release",
        rel.get("version") == release.version and rel.get("model_version") == release.model_version,
        f"the statement is for release {rel.get('version')} (model {rel.get('model_version')})",
    ):
        return chain
    _evidence_links(chain, predicate, release, registry)
    _model_link(chain, predicate, key, name, digest)
    _environments(chain, registry, release, digest, requires or [])
    return chain


def order(chain: Chain) -> list[Link]:
    """The links in the chain's reading order (commit → … → environments)."""
    rank = [
        "commit",
        "data",
        "model",
        "verdict",
        "scan",
        "image",
        "statement",
        "release",
        "evidence",
        "environments",
    ]
    return sorted(chain.links, key=lambda x: rank.index(x.name) if x.name in rank else 99)


@dataclass
class Gate:
    """What a deploy learns from the signatures before anything starts."""

    passed: bool
    reasons: list[str]
    failures: list[str]
    details: dict[str, Any]


def deploy_gate(
    loaded: LoadedConfig,
    registry: ModelRegistry,
    version: str,
    image: str,
    requires: list[str],
) -> Gate:
    """The one call `mlcd deploy` makes before it starts anything: with signing on, the
    release's whole chain must verify for the digest about to run; with it off, a note."""
    section = loaded.config.signing_on
    if section is None:
        from mlcd.signing import off_note

        note = off_note(loaded.config.signing is not None)
        return Gate(passed=True, reasons=[note], failures=[], details={"mode": "off"})
    if not releases.SEMVER.match(version):
        why = f"{version} is a model version released without a signed release record"
        return Gate(passed=False, reasons=[], failures=[why], details={"mode": "key"})
    clock = time.monotonic()
    release = releases.get(registry, version)
    chain = verify_release(loaded, section, registry, release, image=image, requires=requires)
    details = {"mode": "key", **chain.to_json(), "seconds": round(time.monotonic() - clock, 3)}
    if chain.ok:
        line = (
            f"signed chain of {version} verified ({len(chain.links)} links, the image "
            f"{image.partition('@')[2][:19]}…)"
        )
        return Gate(passed=True, reasons=[line], failures=[], details=details)
    failures = [f"signature check: {f}" for f in chain.failures]
    return Gate(passed=False, reasons=[], failures=failures, details=details)

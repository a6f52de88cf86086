"""The release side: sign the model and the image, store the signatures (`mlcd release`).

What is signed:
- the model, as the image serves it: `model/model.skops`, `model/model.json` and
  `project/<module>` (the project's shipped modules), in the OpenSSF model-signing format;
  the signed folder is copied to `<out>/release/signed/` with the signature `model.sig`
  beside it, so that `model_signing verify key` can check it;
- the pushed image: a cosign-style signature (`.sig`) and two DSSE-signed in-toto
  statements (`.att`: SLSA provenance v1 and mlcd's release predicate) stored beside it in
  the registry, and `attestation.json` in the release folder (attached to the GitHub
  release). The public key (`public.pem`) goes into the folder too; the private key never.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mlcd import projectcode
from mlcd.config import LoadedConfig, SigningSection
from mlcd.contracts import train_files, verdict_file
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.evidence import Bundle, utc_now, write_json_atomic
from mlcd.signing import dsse, keys, modelsig, statement, store
from mlcd.tools import registry as oci
from mlcd.tools.git import head_sha


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_files(loaded: LoadedConfig, bundle: Bundle) -> list[tuple[Path, str]]:
    """(file, name in the signed folder) of what the image serves: the model and metadata
    train wrote, and the project modules model.json names (checked unchanged since train)."""
    files = train_files(bundle)
    for path in (files.model, files.meta):
        if not path.is_file():
            raise UserInputError(
                f"{path} is missing, so the model cannot be signed",
                hint="run `mlcd train` with the same --out first",
            )
    meta = json.loads(files.meta.read_text("utf-8"))
    shipped = projectcode.check_shipped(meta.get("project_modules") or [], loaded.root)
    return [
        (files.model, "model/" + files.model.name),
        (files.meta, "model/" + files.meta.name),
        *((source, f"project/{rel}") for source, rel in shipped),
    ]


@dataclass(frozen=True)
class Signed:
    """What signing a release made: the facts for release.json and the run page."""

    details: dict[str, Any]
    reasons: list[str]


def _folder_copy(target: Path, files: list[tuple[Path, str]]) -> None:
    if target.exists():
        shutil.rmtree(target)
    for source, name in files:
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)


def _file_sha(path: Path) -> str | None:
    return _sha256(path) if path.is_file() else None


def release_predicate(
    bundle: Bundle,
    *,
    version: str,
    model_version: str,
    image_id: str,
    evidence_digest: str,
    commit: str,
    model_bundle: dict[str, Any],
    hint: str,
) -> dict[str, Any]:
    meta = json.loads(train_files(bundle).meta.read_text("utf-8"))
    verdict_path = verdict_file(bundle)
    verdict = json.loads(verdict_path.read_text("utf-8")) if verdict_path.is_file() else {}
    scan = bundle.read("scan")
    return {
        "release": {"version": version, "model_version": model_version, "image_id": image_id},
        "commit": commit,
        "data": {"sha256": str(meta.get("data_sha256", "")), "rows": meta.get("rows")},
        "model": {
            "name": str(meta.get("name", "")),
            "fingerprint": meta.get("fingerprint"),
            "signature_digest": modelsig.bundle_digest(model_bundle),
            "signature": model_bundle,
        },
        "verdict": {
            "path": "evaluate/verdict.json",
            "sha256": _file_sha(verdict_path),
            "passed": verdict.get("passed"),
        },
        "champion": verdict.get("comparison"),
        "scan": {
            "path": "scan/result.json",
            "sha256": _file_sha(bundle.root / "scan" / "result.json"),
            "status": scan.status if scan is not None else None,
        },
        "evidence_digest": evidence_digest,
        "key": hint,
    }


def sign_release(
    loaded: LoadedConfig,
    bundle: Bundle,
    section: SigningSection,
    folder: Path,
    *,
    name: str,
    digest: str,
    version: str,
    model_version: str,
    image_id: str,
    evidence_digest: str,
    base_image: str,
    started: str,
) -> Signed:
    """Sign model and image with the release key and store the signatures; exit 2 when the
    key is not the one `signing.verify.key` names (every deploy would refuse the release)."""
    clock = time.monotonic()
    key = keys.private_key(loaded, section)
    public = key.public_key()
    if section.verify.key:
        expected = keys.public_key(loaded, section)
        if keys.public_pem(expected) != keys.public_pem(public):
            raise UserInputError(
                f"the signing key's public half is not signing.verify.key ({section.verify.key}): "
                "every deploy would refuse this release",
                hint="sign with the key that matches signing.verify.key, or update it",
            )
    files = model_files(loaded, bundle)
    digests = {n: _sha256(p) for p, n in files}
    model_bundle = modelsig.sign(key, loaded.config.project, digests)
    signed_dir = folder / "signed"
    _folder_copy(signed_dir, files)
    write_json_atomic(folder / "model.sig", model_bundle)
    (folder / "public.pem").write_bytes(keys.public_pem(public))
    commit = head_sha(loaded.root)
    meta = json.loads(train_files(bundle).meta.read_text("utf-8"))
    predicate = release_predicate(
        bundle,
        version=version,
        model_version=model_version,
        image_id=image_id,
        evidence_digest=evidence_digest,
        commit=commit,
        model_bundle=model_bundle,
        hint=keys.key_hint(public),
    )
    provenance = statement.slsa(
        name,
        digest,
        commit=commit,
        config=loaded.path.name,
        config_sha256=loaded.sha256,
        data_sha256=str(meta.get("data_sha256", "")),
        model_digest=modelsig.root_digest(digests),
        base_image=base_image,
        started=started,
        finished=utc_now(),
    )
    envelopes = [
        (statement.SLSA, _envelope(key, provenance)),
        (statement.MLCD, _envelope(key, statement.release(name, digest, predicate))),
    ]
    write_json_atomic(
        folder / "attestation.json",
        {"image": f"{name}@{digest}", "attestations": [e for _, e in envelopes]},
    )
    try:
        sig_tag, sig_bytes = store.push_signature(name, digest, key)
        att_tag, att_bytes = store.push_attestations(name, digest, envelopes)
    except oci.RegistryError as exc:
        raise EnvironmentMissing(
            f"the signature of {name}@{digest} could not be stored in the registry: {exc}",
            hint="the registry must accept pushes of other tags of the image's repository",
        ) from exc
    sizes = {
        "model_signature_bytes": (folder / "model.sig").stat().st_size,
        "attestation_bytes": att_bytes,
        "signature_bytes": sig_bytes,
    }
    details = {
        "mode": "key",
        "key": keys.key_hint(public),
        "public_key": keys.public_pem(public).decode("ascii"),
        "model_signature": modelsig.bundle_digest(model_bundle),
        "model_files": digests,
        "signature_tag": f"{name}:{sig_tag}",
        "attestation_tag": f"{name}:{att_tag}",
        **sizes,
        "seconds": round(time.monotonic() - clock, 3),
    }
    reasons = [
        (
            f"signed the model ({len(digests)} files, OpenSSF model signing) and the image "
            f"(key {keys.key_hint(public)[:16]}…)"
        ),
        (
            f"stored {name}:{sig_tag} and {name}:{att_tag} (SLSA provenance v1 + mlcd release "
            "statement) beside the image"
        ),
    ]
    return Signed(details, reasons)


def _envelope(key: ec.EllipticCurvePrivateKey, data: dict[str, Any]) -> dict[str, Any]:
    return dsse.sign(key, json.dumps(data, sort_keys=True).encode("utf-8"))


def check_signable(section: SigningSection) -> None:
    """Keyless signing (a `signing.verify` identity) needs the public Sigstore services."""
    if section.verify.key is None:
        raise EnvironmentMissing(
            "signing.verify names a keyless identity; mlcd signs with a key (keyless signing "
            "needs the job's OIDC token and the public Sigstore services)",
            hint="on github.com the workflow's actions/attest-build-provenance step signs the "
            "image keylessly; give mlcd a key (MLCD_SIGNING_KEY, signing.verify.key) for the "
            "model and its statement (docs/signing.md)",
        )


__all__ = ["Signed", "check_signable", "model_files", "sign_release"]

"""The model's signature in the OpenSSF model-signing format (model-signing 1.x, `key`
method), written and read with `cryptography` alone, so that mlcd needs no model-signing
at run time and the serving image does not grow.

The signature is a Sigstore bundle (v0.3) around a DSSE envelope of an in-toto statement:
the subject is the model's name with the sha256 over the files' digests (in name order);
the predicate (`https://model_signing/signature/v1.0`) lists every file by its path in the
signed folder with its sha256, and the serialization (`files`, sha256). The bundle's
verification material carries the public key's hint (sha256 of its PEM). `model_signing
verify key FOLDER --public_key PUB --signature SIG` accepts what `sign` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mlcd.signing import dsse
from mlcd.signing.keys import key_hint

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://model_signing/signature/v1.0"
SERIALIZATION = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}


class ModelSignatureError(ValueError):
    """A model signature that is malformed or does not verify."""


def file_digests(folder: Path) -> dict[str, str]:
    """Every regular file under `folder`, by its POSIX path relative to it → sha256 hex."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ModelSignatureError(f"{path} is a symbolic link; a signed model has none")
        if path.is_file():
            found[path.relative_to(folder).as_posix()] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return found


def root_digest(digests: dict[str, str]) -> str:
    """sha256 over the files' digests in name order: the statement's subject digest."""
    hasher = hashlib.sha256()
    for name in sorted(digests):
        hasher.update(bytes.fromhex(digests[name]))
    return hasher.hexdigest()


def statement(name: str, digests: dict[str, str]) -> dict[str, Any]:
    return {
        "_type": STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": root_digest(digests)}}],
        "predicateType": PREDICATE,
        "predicate": {
            "serialization": dict(SERIALIZATION),
            "resources": [
                {"name": n, "algorithm": "sha256", "digest": digests[n]} for n in sorted(digests)
            ],
        },
    }


def sign(key: ec.EllipticCurvePrivateKey, name: str, digests: dict[str, str]) -> dict[str, Any]:
    """The model signature (a Sigstore bundle) of files `digests` of the model `name`."""
    payload = json.dumps(statement(name, digests), sort_keys=True).encode("utf-8")
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": dsse.sign(key, payload),
    }


def verify(key: ec.EllipticCurvePublicKey, bundle: Any) -> dict[str, str]:
    """The signed files (name → sha256 hex) of a model signature `key` made; raises
    ModelSignatureError when the bundle is malformed, made by another key, or inconsistent."""
    if not isinstance(bundle, dict) or bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise ModelSignatureError(f"not a Sigstore bundle of media type {BUNDLE_MEDIA_TYPE}")
    hint = ((bundle.get("verificationMaterial") or {}).get("publicKey") or {}).get("hint")
    if hint and hint != key_hint(key):
        raise ModelSignatureError(
            "the model signature names another public key than the one configured"
        )
    try:
        payload = dsse.open_envelope(key, bundle.get("dsseEnvelope"))
        data = json.loads(payload)
    except (dsse.EnvelopeError, ValueError) as exc:
        raise ModelSignatureError(f"the model signature does not verify: {exc}") from exc
    if not isinstance(data, dict) or data.get("predicateType") != PREDICATE:
        raise ModelSignatureError(f"the model signature's predicate is not {PREDICATE}")
    try:
        resources = data["predicate"]["resources"]
        digests = {
            str(r["name"]): str(r["digest"]) for r in resources if r["algorithm"] == "sha256"
        }
        [subject] = data["subject"]
        expected = subject["digest"]["sha256"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelSignatureError(f"the model signature's statement is malformed ({exc})") from exc
    if root_digest(digests) != expected:
        raise ModelSignatureError("the model signature's files do not hash to its subject digest")
    return digests


def compare(signed: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What differs between the signed files and the files found (empty: the same)."""
    problems = [
        f"{name}: sha256 {actual[name][:12]}… is not the signed {signed[name][:12]}…"
        for name in sorted(signed)
        if name in actual and actual[name] != signed[name]
    ]
    problems += [f"{name}: signed but missing" for name in sorted(set(signed) - set(actual))]
    problems += [f"{name}: present but not signed" for name in sorted(set(actual) - set(signed))]
    return problems


def bundle_digest(bundle: dict[str, Any]) -> str:
    """sha256 of the bundle's canonical JSON (what the image's statement names)."""
    return "sha256:" + hashlib.sha256(canonical(bundle)).hexdigest()


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")

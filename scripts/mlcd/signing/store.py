"""Signatures and attestations beside an image in its registry, in cosign's tag scheme.

For an image `NAME@sha256:HEX`:
- `NAME:sha256-HEX.sig` — an OCI manifest whose one layer is cosign's "simple signing"
  payload (`{"critical": {"identity": …, "image": {"docker-manifest-digest": …}, "type":
  "cosign container image signature"}}`), its ECDSA signature in the layer annotation
  `dev.cosignproject.cosign/signature`: what `cosign verify --key`, Kyverno's
  `verifyImages` and sigstore's policy-controller check;
- `NAME:sha256-HEX.att` — an OCI manifest with one layer per attestation, each a DSSE
  envelope (`application/vnd.dsse.envelope.v1+json`) of an in-toto statement, annotated
  with its `predicateType`, as `cosign attest` stores them.
Any registry stores tags, so this works without the OCI referrers API.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mlcd.signing import dsse
from mlcd.tools import registry as oci

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


def suffix_tag(digest: str, suffix: str) -> str:
    """`sha256:HEX` → `sha256-HEX.<suffix>` (cosign's tag for it)."""
    return digest.replace(":", "-") + "." + suffix


def simple_signing(repository: str, digest: str) -> bytes:
    payload = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _push(name: str, tag: str, layers: list[tuple[bytes, str, dict[str, str]]]) -> str:
    """An OCI manifest of `layers` (data, media type, annotations) under `tag`."""
    described = []
    for data, media_type, notes in layers:
        digest = oci.put_blob(name, data)
        described.append(
            {
                "mediaType": media_type,
                "size": len(data),
                "digest": digest,
                "annotations": notes,
            }
        )
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in described]},
        },
        separators=(",", ":"),
    ).encode("utf-8")
    config_digest = oci.put_blob(name, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "size": len(config), "digest": config_digest},
        "layers": described,
    }
    return oci.put_manifest(name, tag, json.dumps(manifest, separators=(",", ":")).encode("utf-8"))


def push_signature(name: str, digest: str, key: ec.EllipticCurvePrivateKey) -> tuple[str, int]:
    """`NAME:sha256-HEX.sig`; returns the tag and the bytes stored."""
    payload = simple_signing(name, digest)
    signature = base64.b64encode(dsse.sign_bytes(key, payload)).decode("ascii")
    tag = suffix_tag(digest, "sig")
    _push(name, tag, [(payload, SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: signature})])
    return tag, len(payload) + len(signature)


def push_attestations(
    name: str, digest: str, envelopes: list[tuple[str, dict[str, Any]]]
) -> tuple[str, int]:
    """`NAME:sha256-HEX.att` holding (predicate type, DSSE envelope) pairs."""
    layers = [
        (
            json.dumps(envelope, separators=(",", ":")).encode("utf-8"),
            DSSE_LAYER,
            {SIGNATURE_ANNOTATION: "", "predicateType": predicate},
        )
        for predicate, envelope in envelopes
    ]
    tag = suffix_tag(digest, "att")
    _push(name, tag, layers)
    return tag, sum(len(data) for data, _, _ in layers)


@dataclass(frozen=True)
class Stored:
    """What the registry holds beside an image: (payload, signature) pairs of `.sig`, and
    the envelopes of `.att` by predicate type (absent tags: empty)."""

    signatures: list[tuple[bytes, bytes]]
    attestations: list[tuple[str, Any]]


def _layers(name: str, tag: str) -> list[tuple[dict[str, Any], bytes]]:
    found = oci.get_manifest(name, tag)
    if found is None:
        return []
    manifest = json.loads(found[0])
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list):
        return []
    return [
        (layer, oci.get_blob(name, str(layer.get("digest")), limit=16 << 20))
        for layer in layers
        if isinstance(layer, dict)
    ]


def fetch(name: str, digest: str) -> Stored:
    signatures = []
    for layer, data in _layers(name, suffix_tag(digest, "sig")):
        annotation = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
        try:
            signatures.append((data, base64.b64decode(annotation, validate=True)))
        except ValueError:
            continue
    attestations = []
    for layer, data in _layers(name, suffix_tag(digest, "att")):
        predicate = str((layer.get("annotations") or {}).get("predicateType", ""))
        try:
            attestations.append((predicate, json.loads(data)))
        except ValueError:
            continue
    return Stored(signatures, attestations)


def verify_signature(
    stored: Stored, key: ec.EllipticCurvePublicKey, digest: str
) -> tuple[bool, str]:
    """Whether a `.sig` signature verifies with `key` and names `digest`."""
    if not stored.signatures:
        return False, f"no signature is stored beside the image ({suffix_tag(digest, 'sig')})"
    for payload, signature in stored.signatures:
        if not dsse.verify_bytes(key, signature, payload):
            continue
        try:
            named = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        except (ValueError, KeyError, TypeError):
            continue
        if named == digest:
            return True, f"image signature verifies with the configured key and names {digest}"
        return False, f"the image signature names {named}, not the image's {digest}"
    return False, "no image signature verifies with the configured public key"

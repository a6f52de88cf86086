"""DSSE envelopes (secure-systems-lab/dsse v1.0) signed with an EC key, with `cryptography`.

The signature is ECDSA over the pre-authentication encoding
`DSSEv1 <len(type)> <type> <len(payload)> <payload>`, with SHA-256, -384 or -512 by the
curve's size (P-256, P-384, P-521), as model-signing and cosign use them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

IN_TOTO = "application/vnd.in-toto+json"
_CURVES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class EnvelopeError(ValueError):
    """An envelope that is malformed or whose signature does not verify."""


def curve_hash(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash that goes with the key's curve; ValueError for any other curve."""
    algorithm = _CURVES.get(key.curve.name)
    if algorithm is None:
        raise ValueError(f"an EC key on {key.curve.name}: use P-256 (or P-384, P-521)")
    return algorithm()


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(curve_hash(key.public_key())))


def verify_bytes(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(curve_hash(key)))
    except InvalidSignature:
        return False
    return True


def sign(
    key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = IN_TOTO
) -> dict[str, Any]:
    """The envelope `{payloadType, payload, signatures: [{keyid, sig}]}` (base64 fields)."""
    signature = sign_bytes(key, pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode("ascii")}],
    }


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"the envelope's {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"the envelope's {what} is not base64 ({exc})") from exc


def open_envelope(
    key: ec.EllipticCurvePublicKey, envelope: Any, payload_type: str = IN_TOTO
) -> bytes:
    """The payload of an envelope one of whose signatures `key` made; EnvelopeError else."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise EnvelopeError(
            f"the envelope's payloadType is {envelope.get('payloadType')!r}, not {payload_type}"
        )
    payload = _b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("the envelope has no signature")
    encoded = pae(payload_type, payload)
    for entry in signatures:
        if isinstance(entry, dict) and verify_bytes(key, _b64(entry.get("sig"), "sig"), encoded):
            return payload
    raise EnvelopeError("no signature of the envelope verifies with the configured public key")

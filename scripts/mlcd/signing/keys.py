"""The signing key (release side) and the public key (verify side).

The private key comes from `MLCD_SIGNING_KEY` — the PEM text itself (a CI secret), or,
when the value does not start with `-----BEGIN`, the path of a PEM file — else from the
file `signing.key` of mlcd.yaml names. An encrypted key's password is
`MLCD_SIGNING_KEY_PASSWORD`. The key is read into memory only: it is never written to the
run folder, a log or the evidence bundle. The public key is `signing.verify.key`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlcd.config import LoadedConfig, SigningSection
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.signing.dsse import curve_hash

SIGNING_KEY_ENV = "MLCD_SIGNING_KEY"
PASSWORD_ENV = "MLCD_SIGNING_KEY_PASSWORD"  # noqa: S105 - the variable's name  # nosec B105
_MAKE_KEY = (
    "make one: openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 "
    "-nocrypt -out signing.key && openssl ec -in signing.key -pubout -out signing.pub"
)


def _checked(key: object, where: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UserInputError(f"{where}: not an EC private key", hint=_MAKE_KEY)
    try:
        curve_hash(key.public_key())
    except ValueError as exc:
        raise UserInputError(f"{where}: {exc}", hint=_MAKE_KEY) from exc
    return key


def _load_private(data: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(
            data, password.encode("utf-8") if password else None
        )
    except (ValueError, TypeError) as exc:
        raise UserInputError(
            f"{where}: not a PEM private key mlcd can read ({exc})",
            hint=f"an EC P-256 key in PEM; an encrypted key needs {PASSWORD_ENV}",
        ) from exc
    return _checked(key, where)


def private_key(loaded: LoadedConfig, section: SigningSection) -> ec.EllipticCurvePrivateKey:
    """The release's signing key, or exit 3 saying how to provide one."""
    value = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if value.startswith("-----BEGIN"):
        return _load_private(value.encode("utf-8"), SIGNING_KEY_ENV)
    if value:
        path = Path(value).expanduser()
        where = f"{SIGNING_KEY_ENV} (the file {path})"
    elif section.key:
        path = loaded.resolve(section.key)
        where = f"{loaded.path}: signing.key ({path})"
    else:
        raise EnvironmentMissing(
            "signing is on and no signing key is given",
            hint=f"set {SIGNING_KEY_ENV} to the PEM text of an EC P-256 key (in GitHub Actions: "
            "the `signing-key` secret) or to its path, or name a file in `signing.key`; "
            "`signing: off` releases unsigned. " + _MAKE_KEY,
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"{where}: cannot read it ({exc.strerror})") from exc
    return _load_private(data, where)


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """sha256 of the public key's PEM, hex: the hint model-signing records in its bundle."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def load_public_pem(data: bytes, where: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UserInputError(f"{where}: not a PEM public key ({exc})", hint=_MAKE_KEY) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UserInputError(f"{where}: not an EC public key", hint=_MAKE_KEY)
    try:
        curve_hash(key)
    except ValueError as exc:
        raise UserInputError(f"{where}: {exc}", hint=_MAKE_KEY) from exc
    return key


def public_key(loaded: LoadedConfig, section: SigningSection) -> ec.EllipticCurvePublicKey:
    """The public key of `signing.verify.key` (a PEM file relative to mlcd.yaml)."""
    named = section.verify.key
    if not named:
        raise UserInputError(f"{loaded.path}: signing.verify has no `key`")
    path = loaded.resolve(named)
    where = f"{loaded.path}: signing.verify.key ({path})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"{where}: cannot read it ({exc.strerror})") from exc
    return load_public_pem(data, where)

"""Signed releases: the model (OpenSSF model signing) and the image (cosign-style
signature, SLSA provenance and mlcd's release statement), signed by `mlcd release` and
verified by every `mlcd deploy` and by `mlcd verify` (docs/signing.md).

`sign.sign_release` is the release side, `verify.verify_release` the verify side; both
read keys through `keys`, write nothing secret, and reach the registry only through
`mlcd.tools.registry`.
"""

from __future__ import annotations

OFF_NOTE = "signing: off — the model and the image are not signed, and deploys verify nothing"


def off_note(explicit: bool) -> str:
    """The line every summary carries when signing is off."""
    return OFF_NOTE + ("" if explicit else " (no `signing:` in mlcd.yaml)")

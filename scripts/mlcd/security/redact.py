"""Redaction: a secret never leaves the scanner in clear, anywhere it is shown or written."""

from __future__ import annotations

import re
from collections.abc import Callable

# Known token shapes first (keep a short, harmless prefix so a reader knows what it was),
# then anything long and random-looking.
_TOKENS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{10,}"), 4),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}"), 4),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), 5),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{10,}"), 6),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), 3),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*", re.DOTALL), 0),
    (re.compile(r"[A-Za-z0-9+/=_-]{24,}"), 0),
)
_STARS = re.compile(r"\*{4,}")
MAX_MATCH = 120


def _masker(keep: int) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        return match.group(0)[:keep] + "****"

    return mask


def redact(text: str) -> str:
    """`text` with every secret-looking run replaced by a few characters and `****`."""
    out = text
    for pattern, keep in _TOKENS:
        out = pattern.sub(_masker(keep), out)
    out = _STARS.sub("****", out)
    out = " ".join(out.split())
    if len(out) > MAX_MATCH:
        out = out[: MAX_MATCH - 1] + "…"
    return out

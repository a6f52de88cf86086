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


# Parameter names whose values are secrets whatever they look like.
_SECRET_NAME = re.compile(
    r"(?i)(token|secret|passw|api[_-]?key|access[_-]?key|credential|auth|private[_-]?key)"
)


def _looks_secret(value: str) -> bool:
    return any(pattern.search(value) for pattern, _ in _TOKENS)


def _mask_value(value: str) -> str:
    for pattern, keep in _TOKENS:
        if pattern.search(value):
            return pattern.sub(_masker(keep), value)
    return "****"


def secret_values(params: object, *, named: bool = False) -> list[str]:
    """The string values in `params` (nested mappings and lists too) that are secrets: under
    a secret-looking name (`token`, `password`, `api_key`, …) or shaped like one."""
    found: list[str] = []
    if isinstance(params, dict):
        for key, value in params.items():
            found += secret_values(value, named=named or bool(_SECRET_NAME.search(str(key))))
    elif isinstance(params, list | tuple):
        for value in params:
            found += secret_values(value, named=named)
    elif isinstance(params, str) and params and (named or _looks_secret(params)):
        found.append(params)
    return found


def redact_params(params: object, *, named: bool = False) -> object:
    """`params` with every secret value masked (same structure), for files and messages."""
    if isinstance(params, dict):
        return {
            key: redact_params(value, named=named or bool(_SECRET_NAME.search(str(key))))
            for key, value in params.items()
        }
    if isinstance(params, list | tuple):
        return [redact_params(value, named=named) for value in params]
    if isinstance(params, str) and params and (named or _looks_secret(params)):
        return _mask_value(params)
    return params


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with each of `secrets` masked wherever it appears (longest first), keeping
    everything else (paths, numbers) as it is."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, _mask_value(secret))
    return text

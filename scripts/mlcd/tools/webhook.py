"""The webhook adapter: one HTTP POST of a JSON body, with a short timeout and bounded retries.

A webhook is told about a rollout; it never decides it. `post` never raises for the
receiver's failures (an error status, a timeout, a refused connection): it returns what
happened, so the caller logs and records it and carries on. The address may be a secret
(a Slack or Teams incoming-webhook URL carries its token in the path): `redacted` is the
form that may be shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

RETRY_PAUSE = 0.5  # seconds between attempts (doubled each time)


@dataclass(frozen=True)
class Delivery:
    """What one webhook call came to."""

    ok: bool
    attempts: int
    status: int | None
    error: str
    seconds: float


def redacted(url: str) -> str:
    """The address without its path, query or credentials: `https://hooks.slack.com/…`."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def post(url: str, body: bytes, *, timeout: float, retries: int) -> Delivery:
    """POST `body` (JSON) to `url`: up to 1 + `retries` attempts of at most `timeout`
    seconds each; a 2xx answer is delivered, a 4xx other than 408/429 is not retried."""
    started = time.monotonic()
    status: int | None = None
    error = ""
    attempts = 0
    pause = RETRY_PAUSE
    for attempt in range(1, retries + 2):
        attempts = attempt
        try:
            response = requests.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": "mlcd-notify"},
                timeout=(min(timeout, 3.0), timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            status, error = None, f"no answer within {timeout:g} s"
        except requests.RequestException as exc:
            status, error = None, _reason(exc)
        else:
            status = response.status_code
            response.close()
            if 200 <= status < 300:
                return Delivery(
                    ok=True,
                    attempts=attempt,
                    status=status,
                    error="",
                    seconds=time.monotonic() - started,
                )
            error = f"answered HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                break
        if attempt <= retries:
            time.sleep(pause)
            pause *= 2
    return Delivery(
        ok=False, attempts=attempts, status=status, error=error, seconds=time.monotonic() - started
    )


def _reason(exc: requests.RequestException) -> str:
    """A short reason without the address (it may hold a token)."""
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "the host name does not resolve"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return type(exc).__name__

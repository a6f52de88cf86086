"""Free TCP ports for servers mlcd starts, chosen outside the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` comes from the ephemeral range, the same
range every outgoing connection takes its local port from. A port found free that
way and released is, a moment later, sometimes the local end of some client's
connection, and the server meant to listen on it fails with "address already in
use". The local target keeps a model container's host port fixed so that the
container comes back on it after an engine restart (docs/deploy.md), which makes
that window as long as the engine is down. Ports below the range are never taken by
outgoing connections; each is checked bindable and handed out once per process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from mlcd.errors import EnvironmentMissing

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 10_000
_given: set[int] = set()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768, Linux's default, if unreadable)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    probes = ("0.0.0.0", "127.0.0.1")  # noqa: S104 - only probes that the port is free  # nosec B104
    for host in probes:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port nothing listens on, just below the ephemeral range, not given before."""
    high = ephemeral_low() - 1
    low = max(1024, high - _SPAN)
    candidates = [p for p in range(low, high + 1) if p not in _given]
    random.shuffle(candidates)  # nosec B311 - spreads processes apart, not a secret
    for port in candidates:
        if _bindable(port):
            _given.add(port)
            return port
    raise EnvironmentMissing(f"no free TCP port in {low}-{high} (below the ephemeral range)")

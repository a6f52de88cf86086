"""The server's settings: environment variables (inside the image) and command-line options."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlcd.errors import UserInputError

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_RECENT = 10_000


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs to start. Environment names are in `ENV`."""

    model_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 0  # 0: one per CPU core
    model_version: str = ""  # empty: model.json's `version`, else "0.0.0+local"
    max_body_bytes: int = DEFAULT_MAX_BODY
    batch_wait_ms: float = 0.0
    max_batch_rows: int = 4096
    recent_capacity: int = DEFAULT_RECENT
    grace_s: float = 20.0
    keepalive_s: float = 60.0
    # self-defence behind no router (as nginx's client_header_timeout / client_body_timeout)
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this
    body_timeout_s: float = 10.0  # the longest pause between two reads of a request's body
    max_connections: int = 1024  # open connections per worker; more are answered 503

    @property
    def worker_count(self) -> int:
        if self.workers > 0:
            return self.workers
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        quota = cgroup_cpu_limit()
        return max(1, min(cores, quota) if quota else cores)

    def with_options(self, **changes: Any) -> ServeSettings:
        """A copy with the options that were given (None means: keep)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPU quota of this container (docker --cpus), rounded up; None when unlimited."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            if quota == "max":
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        return None
    return None


# env var -> field
ENV: dict[str, str] = {
    "MLCD_MODEL_DIR": "model_dir",
    "MLCD_HOST": "host",
    "MLCD_PORT": "port",
    "MLCD_WORKERS": "workers",
    "MLCD_MODEL_VERSION": "model_version",
    "MLCD_MAX_BODY_BYTES": "max_body_bytes",
    "MLCD_BATCH_WAIT_MS": "batch_wait_ms",
    "MLCD_MAX_BATCH_ROWS": "max_batch_rows",
    "MLCD_RECENT_CAPACITY": "recent_capacity",
    "MLCD_GRACE_S": "grace_s",
    "MLCD_KEEPALIVE_S": "keepalive_s",
    "MLCD_HEADER_TIMEOUT_S": "header_timeout_s",
    "MLCD_BODY_TIMEOUT_S": "body_timeout_s",
    "MLCD_MAX_CONNECTIONS": "max_connections",
}

_INT_LIMITS: dict[str, tuple[int, int]] = {
    "port": (0, 65535),
    "workers": (0, 256),
    "max_body_bytes": (64, 1 << 31),
    "max_batch_rows": (1, 1_000_000),
    "recent_capacity": (1, 1_000_000),
    "max_connections": (1, 1_000_000),
}
_FLOAT_LIMITS: dict[str, tuple[float, float]] = {
    "batch_wait_ms": (0.0, 1000.0),
    "grace_s": (0.0, 3600.0),
    "keepalive_s": (0.1, 3600.0),
    "header_timeout_s": (0.1, 3600.0),
    "body_timeout_s": (0.1, 3600.0),
}


def parse_value(field: str, raw: str, where: str) -> Any:
    """Parse one setting, or exit 2 naming the variable/option and the accepted range."""
    if field == "model_dir":
        return Path(raw)
    if field in ("host", "model_version"):
        return raw
    if field in _INT_LIMITS:
        low, high = _INT_LIMITS[field]
        try:
            value: float = int(raw)
        except ValueError as exc:
            raise UserInputError(f"{where}={raw!r} is not an integer") from exc
    else:
        low_f, high_f = _FLOAT_LIMITS[field]
        low, high = low_f, high_f  # type: ignore[assignment]
        try:
            value = float(raw)
        except ValueError as exc:
            raise UserInputError(f"{where}={raw!r} is not a number") from exc
        if math.isnan(value):
            raise UserInputError(f"{where}={raw!r} is not a number")
    if not low <= value <= high:
        raise UserInputError(f"{where}={raw!r} is out of range ({low} to {high})")
    return value


def from_env(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Settings from MLCD_* variables; MLCD_MODEL_DIR defaults to ./model."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, field in ENV.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        values[field] = parse_value(field, raw, name)
    values.setdefault("model_dir", Path("model"))
    return ServeSettings(**values)

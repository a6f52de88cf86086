"""An environment's state file and its lock.

`.mlcd-state/<env>/state.json` (next to the config, or under ``MLCD_STATE_DIR``) says what is
live (`stable`), what is rolling out (`rollout`), which releases ran before (`previous`), which
old containers are kept for a while (`retired`), the last analysis and the history of every
step. It is rewritten atomically after every step, so a process killed at any moment leaves
a file that says what it was doing.

`.mlcd-state/<env>/lock` serialises rollouts: the holder keeps an exclusive ``flock`` on it
for as long as it runs and writes its pid and process start time into it. The kernel drops
the flock when the holder dies, even by SIGKILL, so the next command takes the lock over; the
pid and start time name the holder in the refusal message and tell a dead holder (whose
rollout needs recovering) from a live one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import GateFailed, UserInputError
from mlcd.evidence import utc_now, write_json_atomic

STATE_VERSION = 1
HISTORY_LIMIT = 500
_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")


def safe_name(text: str) -> str:
    """A string usable in container names and file names."""
    return _NAME.sub("-", text).strip("-.") or "x"


@dataclass
class Arm:
    """One running release: its container and where it answers."""

    version: str
    image: str
    container: str
    port: int
    color: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arm:
        return cls(
            version=str(data["version"]),
            image=str(data["image"]),
            container=str(data["container"]),
            port=int(data["port"]),
            color=str(data.get("color", "blue")),
        )


@dataclass
class Rollout:
    """A rollout in progress (or paused for a decision)."""

    version: str
    image: str
    strategy: str
    phase: str  # progressing | paused
    candidate: Arm | None = None
    step: int = 0
    weight: int = 0
    started: str = field(default_factory=utc_now)
    owner_pid: int = 0
    owner_start: str = ""
    waiting_for: str = ""
    owner_host: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        cand = data.get("candidate")
        return cls(
            version=str(data["version"]),
            image=str(data["image"]),
            strategy=str(data["strategy"]),
            phase=str(data["phase"]),
            candidate=Arm.from_json(cand) if isinstance(cand, dict) else None,
            step=int(data.get("step", 0)),
            weight=int(data.get("weight", 0)),
            started=str(data.get("started", "")),
            owner_pid=int(data.get("owner_pid", 0)),
            owner_start=str(data.get("owner_start", "")),
            waiting_for=str(data.get("waiting_for", "")),
            owner_host=str(data.get("owner_host", "")),
        )


@dataclass
class Retired:
    """An old arm kept up after a switch, until `remove_after` (epoch seconds)."""

    arm: Arm
    remove_after: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Retired:
        return cls(arm=Arm.from_json(data["arm"]), remove_after=float(data["remove_after"]))


@dataclass
class EnvState:
    """Everything mlcd knows about one environment."""

    env: str
    project: str
    stable: Arm | None = None
    rollout: Rollout | None = None
    previous: list[Arm] = field(default_factory=list)
    retired: list[Retired] = field(default_factory=list)
    router_port: int = 0
    router_generation: int = 0
    last_analysis: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    # a release that went live but is not yet recorded in the model registry
    unrecorded: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION

    def record(self, event: str, version: str | None = None, **detail: Any) -> None:
        entry: dict[str, Any] = {"time": utc_now(), "event": event}
        if version is not None:
            entry["version"] = version
        entry.update(detail)
        self.history.append(entry)
        del self.history[:-HISTORY_LIMIT]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvState:
        stable = data.get("stable")
        rollout = data.get("rollout")
        return cls(
            env=str(data["env"]),
            project=str(data.get("project", "")),
            stable=Arm.from_json(stable) if isinstance(stable, dict) else None,
            rollout=Rollout.from_json(rollout) if isinstance(rollout, dict) else None,
            previous=[Arm.from_json(a) for a in data.get("previous", [])],
            retired=[Retired.from_json(r) for r in data.get("retired", [])],
            router_port=int(data.get("router_port", 0)),
            router_generation=int(data.get("router_generation", 0)),
            last_analysis=dict(data.get("last_analysis", {})),
            history=list(data.get("history", [])),
            unrecorded=dict(data.get("unrecorded") or {}),
        )


class StateStore:
    """The state folder of one environment."""

    def __init__(self, folder: Path, env: str, project: str) -> None:
        self.folder = folder
        self.env = env
        self.project = project

    @property
    def path(self) -> Path:
        return self.folder / "state.json"

    def load(self) -> EnvState:
        if not self.path.is_file():
            return EnvState(env=self.env, project=self.project)
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return EnvState.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(
                f"{self.path}: the environment's state file is unreadable ({exc})",
                hint="inspect it; moving it aside makes mlcd treat the environment as empty",
            ) from exc

    def save(self, state: EnvState) -> None:
        write_json_atomic(self.path, state.to_json())


# --------------------------------------------------------------------------------------
# Lock


class LockRefused(GateFailed):
    """Another live command holds the environment's lock (exit 1; the message names it)."""

    holder: LockInfo | None = None  # who holds it, when the lock says


def process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot, from /proc), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("utf-8")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def holder_alive(pid: int, start: str) -> bool:
    """True when the process that wrote a lock is still the same running process."""
    return pid > 0 and process_start(pid) == start


def holder_running(pid: int, start: str) -> bool:
    """`holder_alive`, and not a zombie (an exited process its parent has not reaped yet has
    closed its files, so its lock is free)."""
    if not holder_alive(pid, start):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("utf-8")
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] != "Z"


@dataclass(frozen=True)
class LockInfo:
    pid: int
    start: str
    host: str
    command: str
    acquired: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, since {self.acquired})"


class EnvLock:
    """An exclusive lock on an environment, held while a command changes it."""

    def __init__(self, folder: Path, env: str) -> None:
        self.path = folder / "lock"
        self.env = env
        self._fd: int | None = None
        self.previous: LockInfo | None = None  # what the file said when we took it

    def read(self) -> LockInfo | None:
        try:
            data = json.loads(self.path.read_text("utf-8") or "{}")
            return LockInfo(
                pid=int(data["pid"]),
                start=str(data["start"]),
                host=str(data.get("host", "")),
                command=str(data.get("command", "")),
                acquired=str(data.get("acquired", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(self, command: str, *, wait: float = 0.0) -> None:
        """Take the lock, or raise GateFailed naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                os.close(fd)
                holder = self.read()
                who = holder.describe() if holder else "another mlcd process"
                refusal = LockRefused(
                    f"environment `{self.env}` is locked by {who}: one rollout per "
                    "environment at a time",
                    hint=f"wait for it to finish, or see `mlcd status {self.env}`",
                )
                refusal.holder = holder
                raise refusal from exc
        self._fd = fd
        self.previous = self.read()
        me = os.getpid()
        info = {
            "pid": me,
            "start": process_start(me) or "",
            "host": socket.gethostname(),
            "command": command,
            "acquired": utc_now(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        os.fsync(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def peek(self) -> LockInfo | None:
        """The live holder, if any (without taking the lock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.read()
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator[EnvLock]:
        self.acquire(command)
        try:
            yield self
        finally:
            self.release()

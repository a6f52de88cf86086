"""The nginx adapter: Debian's nginx, one private prefix folder per environment.

`nginx -p PREFIX -c PREFIX/nginx.conf` runs with everything (pid, logs, temp folders) under
PREFIX; changes are applied with `nginx -s reload`, which starts new workers with the new
configuration and lets the old ones finish their requests (no request is dropped).

A configuration may carry a second, client-side one after `FRONT_MARKER` (see
`mlcd.rollout.router`): that one runs as its own nginx under PREFIX/front, is started once
and reloaded only when its text changes, so that clients' kept-alive connections never see
the routing side's reloads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from mlcd.errors import EnvironmentMissing
from mlcd.tools.base import ToolResult, run

INSTALL_HINT = (
    "install Debian's nginx: sudo apt-get install nginx (or sudo bash scripts/setup/apt.sh); "
    "mlcd runs its own nginx processes and does not touch the system's nginx service"
)


FRONT_MARKER = "# ---- mlcd router: client side ----"
_UNIX_LISTEN = re.compile(r"^\s*listen unix:(\S+);", re.MULTILINE)


def split_config(text: str) -> tuple[str, str | None]:
    """The routing configuration and the client-side one (None when there is none)."""
    routes, marker, front = text.partition(FRONT_MARKER + "\n")
    return (routes, front) if marker else (text, None)


def program() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        raise EnvironmentMissing("`nginx` is not installed", hint=INSTALL_HINT)
    return found


class Nginx:
    """One nginx instance under `prefix`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix.resolve()
        self.conf = self.prefix / "nginx.conf"
        self.pidfile = self.prefix / "nginx.pid"
        self.error_log = self.prefix / "logs" / "error.log"
        self._retiring: set[int] = set()  # workers of earlier configurations
        self.front: Nginx | None = None  # the client side, when the config has one

    def _argv(self, *extra: str) -> list[str]:
        return [
            program(),
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def _prepare(self) -> None:
        for sub in ("logs", "scratch"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        self._prepare()
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(self.conf)

    def test(self) -> ToolResult:
        return run(self._argv("-t", "-q"), timeout=30)

    def _failure(self, what: str, result: ToolResult) -> EnvironmentMissing:
        text = (result.stderr or result.stdout).strip()
        hint = "see " + str(self.error_log)
        if "Address already in use" in text:
            hint = (
                "another program listens on the environment's port; set "
                "environments.<env>.port in mlcd.yaml or MLCD_<ENV>_PORT"
            )
        return EnvironmentMissing(f"nginx {what} failed: {text[-400:]}", hint=hint)

    def master_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text("utf-8").strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"nginx" in cmdline and b"master" in cmdline else None

    def running(self) -> bool:
        """The nginx (and its client side, once it has one) is running."""
        if self.master_pid() is None:
            return False
        front = self._front_instance()
        return not front.conf.is_file() or front.master_pid() is not None

    def _front_instance(self) -> Nginx:
        if self.front is None:
            self.front = Nginx(self.prefix / "front")
        return self.front

    def apply(self, text: str) -> None:
        """Write the configuration and start nginx, or reload it gracefully; a client side
        (after FRONT_MARKER) is started after the routes and reloaded only when changed."""
        routes, front_text = split_config(text)
        self._apply(routes)
        if front_text is not None:
            front = self._front_instance()
            current = front.conf.read_text("utf-8") if front.conf.is_file() else None
            if current != front_text or not front.running():
                front._apply(front_text)

    def _apply(self, text: str) -> None:
        previous = self.conf.read_text("utf-8") if self.conf.is_file() else None
        self.write(text)
        checked = self.test()
        if checked.returncode != 0:
            if previous is not None:
                self.write(previous)
            raise self._failure("configuration test", checked)
        # this instance's own master: running() also wants the client side, which apply()
        # starts after this one (after a reboot both are gone)
        if self.master_pid() is not None:
            self._retiring |= self.workers()
            result = run(self._argv("-s", "reload"), timeout=30)
            if result.returncode != 0:
                raise self._failure("reload", result)
            return
        with contextlib.suppress(OSError):
            self.pidfile.unlink()
        for socket in _UNIX_LISTEN.findall(text):
            with contextlib.suppress(OSError):
                Path(socket).unlink()  # left by an nginx that was killed: bind would fail
        result = run(self._argv(), timeout=30)
        if result.returncode != 0:
            raise self._failure("start", result)
        deadline = time.monotonic() + 10
        while self.master_pid() is None:
            if time.monotonic() > deadline:
                raise EnvironmentMissing(
                    f"nginx did not start under {self.prefix}", hint=f"see {self.error_log}"
                )
            time.sleep(0.05)

    def workers(self) -> set[int]:
        """The pids of the master's worker processes (old ones still finishing included)."""
        master = self.master_pid()
        if master is None:
            return set()
        found: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text("utf-8")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(master):
                found.add(int(entry.name))
        return found

    def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until the workers that ran before the last reloads have exited.

        After `nginx -s reload` the old workers finish their requests, then exit; until they
        have, they may still talk to the old upstream, so a container is removed only after
        this returns. True when they all exited within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while self._retiring:
            self._retiring &= self.workers()
            if not self._retiring:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Stop gracefully (`nginx -s quit`), the client side first, waiting for the
        masters to exit."""
        front = self._front_instance()
        if front.master_pid() is not None:
            front.stop()
        master = self.master_pid()
        if master is None:
            return
        run(self._argv("-s", "quit"), timeout=30)
        deadline = time.monotonic() + 15
        while self.master_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.master_pid() is not None:
            with contextlib.suppress(OSError):
                os.kill(master, 15)

"""The docker-host target: a server's Docker engine over SSH, with everything on the server.

`target: docker-host` with `host: ssh://user@server[:port]`. Docker's own SSH transport
(`DOCKER_HOST=ssh://…`, `mlcd.tools.ssh`) carries every call; on the server, per environment
(`mlcd-<project>-<env>`):
- a bridge network `mlcd-<project>-<env>`; the model containers join it and publish nothing;
- the router: two containers of `router.image` (nginx), both restarted with the engine and
  both mounting the state volume, as on the local target (`mlcd.rollout.router`):
  `mlcd-<project>-<env>-router`, the client side, publishes the environment's port on the
  server's addresses and never reloads (keep-alive, pipelining, a connection limit per
  client address, header and body timeouts, JSON errors); every request goes on over a
  Unix socket in the volume to `mlcd-<project>-<env>-routes`, the routing side on the
  network, whose configuration is `render_routes()`'s, written into the volume and applied
  by `nginx -s reload` through `docker exec` (the old workers finish their requests; a
  container is removed only after they have exited);
- the state volume `mlcd-<project>-<env>-state`: `state/state.json` (what is live, the
  rollout in progress, the history), written whole to a temporary file and renamed, after a
  byte count check, so a dropped connection never leaves half a file;
- the lock: a container `mlcd-<project>-<env>-lock` started with `docker run -i --rm` whose
  stdin this process holds. Container names are unique on an engine, so a second deploy from
  any machine fails to create it and is told who holds it (from its labels); when the holder
  dies, even by SIGKILL, or its SSH connection drops, the container's stdin closes and the
  engine removes it: the lock is free again, and the next command finds the interrupted
  rollout in the state and undoes it.
The server pulls releases by digest itself (the client's registry login travels with the
pull; nothing is stored on the server). Readiness checks and metrics go through SSH tunnels
to the containers' addresses on the bridge, never through a published port.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from pathlib import Path
from typing import Any

from mlcd.errors import EnvironmentMissing
from mlcd.rollout.router import Backend, RouterSpec, Routing, render_front, render_routes
from mlcd.rollout.state import Arm, EnvState, LockInfo, LockRefused, process_start, safe_name
from mlcd.rollout.targets.base import (
    CONTAINER_PORT,
    Owner,
    Route,
    Target,
    salted,
    wait_generation,
)
from mlcd.tools import docker
from mlcd.tools.base import ToolResult
from mlcd.tools.ssh import SshTransport

ROOT = "/mlcd"
STATE_FILE = f"{ROOT}/state/state.json"
ROUTER_PREFIX = f"{ROOT}/router"
FRONT_PREFIX = f"{ROUTER_PREFIX}/front"  # render_front's folder under the prefix
ROUTER_SOCKET = f"{ROUTER_PREFIX}/routes.sock"  # the routing side's, shared in the volume
FRONT_ROLE = "router-front"
USER = "65534:65534"
LOCK_WAIT = 30.0
LOCKED = "mlcd-locked"
_LOCK_LABELS = ("pid", "start", "host", "command", "acquired")
# The lock container's loop: requests on stdin, answers on stdout (POSIX sh; dash's `read`
# and GNU `head -c` never read past what they were asked for). It ends, and the container
# with it, when the holder's end of stdin closes.
_SERVE = (
    'while read -r op size; do case "$op" in '
    f"put) f={STATE_FILE} ;; conf) f={ROUTER_PREFIX}/nginx.conf ;; "
    f"front) f={FRONT_PREFIX}/nginx.conf ;; "
    f"get) if [ -f {STATE_FILE} ]; then wc -c < {STATE_FILE}; cat {STATE_FILE}; "
    "else echo 3; echo '{}'; fi; continue ;; "
    "*) echo unknown; continue ;; esac; "
    'head -c "$size" > "$f.tmp"; '
    'if [ "$(wc -c < "$f.tmp")" -eq "$size" ] && mv -f "$f.tmp" "$f"; then echo ok; '
    "else echo failed; fi; done"
)
# the pids of the router master's worker processes (POSIX sh; no procps in the image)
_WORKERS = (
    f'm=$(cat {ROUTER_PREFIX}/nginx.pid); for d in /proc/[0-9]*; do s=$(cat "$d/stat" 2>/dev/null)'
    ' || continue; set -- ${s##*) }; [ "$2" = "$m" ] && echo "${d#/proc/}"; done; true'
)


class DockerHostTarget(Target):
    kind = "docker-host"

    def __init__(
        self,
        project: str,
        env: str,
        port: int,
        transport: SshTransport,
        router_image: str,
        *,
        routing: Routing | None = None,
    ) -> None:
        self.routing = routing or Routing()
        self.project = project
        self.env = env
        self.port = port
        self.transport = transport
        self.router_image = router_image
        self.denv = transport.docker_env
        self.base = "-".join(safe_name(p) for p in ("mlcd", project, env)).lower()
        self.network = self.base
        self.volume = f"{self.base}-state"
        self.router = f"{self.base}-router"  # the client side, on the environment's port
        self.routes = f"{self.base}-routes"  # the routing side, reloaded on every change
        self._front_checked = False
        self.lock_name = f"{self.base}-lock"
        self._lock: Any = None  # the attached `docker run -i` of the lock container
        self._retiring: set[str] = set()
        self._ports: dict[str, tuple[str, int]] = {}  # container -> (address, local port)

    # ---------------------------------------------------------------- plumbing

    def _docker(
        self, *args: str, check: bool = True, timeout: float = 120, input_text: str | None = None
    ) -> ToolResult:
        return docker.call(
            list(args),
            env=self.denv,
            check=check,
            timeout=timeout,
            input_text=input_text,
            what=" ".join(args[:2]) + f" on {self.transport.target.url}",
        )

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        result = self._docker("container", "inspect", ref, check=False)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout)
        return data[0] if data else None

    def _run_detached(self, name: str, *args: str) -> None:
        """`docker run --detach --name NAME …` on the server, which pulls the image when it
        lacks it; a missing network is created and a leftover container of that name
        replaced (each costs a call only when it happens)."""
        for _ in range(3):
            result = self._docker("run", "--detach", "--name", name, *args, check=False,
                                  timeout=1800)  # fmt: skip
            if result.returncode == 0:
                return
            err = result.stderr.lower()
            if "already in use" in err:
                self._docker("rm", "--force", name, check=False)
            elif "network" in err and "not found" in err:
                self._ensure_network()
            else:
                pull = any(w in err for w in ("pull", "manifest", "unauthorized", "denied"))
                raise EnvironmentMissing(
                    f"`docker run {name}` on {self.transport.target.url} failed: "
                    f"{docker.first_error(result.stderr)}",
                    hint="the server must reach the image registry; log in to it where mlcd "
                    "runs (`docker login`): the login travels with the pull"
                    if pull
                    else None,
                )
        raise EnvironmentMissing(f"`docker run {name}` on {self.transport.target.url} kept failing")

    def _ensure_network(self) -> None:
        if self._docker("network", "inspect", self.network, check=False).returncode != 0:
            self._docker(
                "network", "create", "--label", f"mlcd.project={self.project}", self.network
            )

    @property
    def url(self) -> str:
        return f"http://{self.transport.target.address}:{self.port}"

    @property
    def router_address(self) -> tuple[str, int]:
        return (self.transport.target.address, self.port)

    def describe(self) -> str:
        return f"docker-host target {self.transport.target.url}, router {self.url}"

    # ---------------------------------------------------------------- state

    @property
    def state_location(self) -> str:
        return f"volume {self.volume} on {self.transport.target.url}"

    def load_state(self) -> EnvState:
        if self._holding():
            text = self._request("get").decode("utf-8")
        else:
            if self._docker("volume", "inspect", self.volume, check=False).returncode != 0:
                return EnvState(env=self.env, project=self.project)
            script = f'if [ -f {STATE_FILE} ]; then cat {STATE_FILE}; else echo "{{}}"; fi'
            text = self._docker(
                "run", "--rm", "--network", "none", "--user", USER, "--entrypoint", "sh",
                "-v", f"{self.volume}:{ROOT}:ro", self.router_image, "-c", script,
            ).stdout  # fmt: skip
        try:
            data = json.loads(text or "{}")
            if not data:
                return EnvState(env=self.env, project=self.project)
            return EnvState.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise EnvironmentMissing(
                f"{self.state_location}: the environment's state is unreadable ({exc})"
            ) from exc

    def save_state(self, state: EnvState) -> None:
        text = json.dumps(state.to_json(), indent=2, sort_keys=True, default=str) + "\n"
        self._request("put", text.encode("utf-8"))

    def _request(self, op: str, payload: bytes = b"", timeout: float = 60.0) -> bytes:
        """One exchange with the lock container over its stdin/stdout (`_SERVE`): `put`
        and `conf` write a file atomically (answer `ok`), `get` reads the state."""
        self._check_lock()
        proc = self._lock
        try:
            proc.stdin.write(f"{op} {len(payload)}\n".encode() + payload)
            proc.stdin.flush()
            answer = self._readline(proc, timeout)
            if op == "get":
                size = int(answer or b"-1")
                body = b""
                while len(body) < size:
                    body += self._read(proc, size - len(body), timeout)
                return body
        except (OSError, ValueError) as exc:
            raise EnvironmentMissing(
                f"lost the lock of `{self.env}` on {self.transport.target.url} ({exc})",
                hint=f"the next `mlcd status {self.env}` restores stable serving",
            ) from exc
        if answer.strip() != b"ok":
            raise EnvironmentMissing(
                f"writing {op} into volume {self.volume} on {self.transport.target.url} "
                f"failed ({answer.decode('utf-8', 'replace').strip() or 'no answer'})",
                hint="is the server's disk full?",
            )
        return answer

    @staticmethod
    def _read(proc: Any, size: int, timeout: float) -> bytes:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise ValueError(f"no answer within {timeout:g} s")
        chunk: bytes = os.read(proc.stdout.fileno(), size)
        if not chunk:
            raise ValueError("the lock container's connection closed")
        return chunk

    def _readline(self, proc: Any, timeout: float) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            line += self._read(proc, 1, timeout)
        return line

    # ---------------------------------------------------------------- lock

    def owner(self) -> Owner:
        me = os.getpid()
        return Owner(me, process_start(me) or "", socket.gethostname())

    def _holding(self) -> bool:
        return self._lock is not None and self._lock.poll() is None

    def _check_lock(self) -> None:
        if not self._holding():
            raise EnvironmentMissing(
                f"lost the lock of `{self.env}` on {self.transport.target.url} (the SSH "
                "connection dropped?); nothing more is changed",
                hint=f"the next `mlcd status {self.env}` restores stable serving",
            )

    def _lock_info(self, data: dict[str, Any]) -> LockInfo | None:
        labels = (data.get("Config") or {}).get("Labels") or {}
        try:
            return LockInfo(
                pid=int(labels.get("mlcd.lock.pid", "0")),
                start=str(labels.get("mlcd.lock.start", "")),
                host=str(labels.get("mlcd.lock.host", "")),
                command=str(labels.get("mlcd.lock.command", "")),
                acquired=str(labels.get("mlcd.lock.acquired", "")),
            )
        except ValueError:
            return None

    def holder(self) -> str | None:
        data = self._inspect(self.lock_name)
        if data is None or not (data.get("State") or {}).get("Running"):
            return None
        info = self._lock_info(data)
        return info.describe() if info else f"container {self.lock_name}"

    def acquire(self, command: str) -> None:
        from mlcd.evidence import utc_now

        me = self.owner()
        info = {
            "pid": str(me.pid),
            "start": me.start,
            "host": me.host,
            "command": command,
            "acquired": utc_now(),
        }
        labels = [
            arg for key in _LOCK_LABELS for arg in ("--label", f"mlcd.lock.{key}={info[key]}")
        ]
        init = (
            f"mkdir -p {ROOT}/state {ROUTER_PREFIX}/logs {ROUTER_PREFIX}/scratch "
            f"{FRONT_PREFIX}/logs {FRONT_PREFIX}/scratch && "
            f"chown -R {USER} {ROOT} && echo {LOCKED} && {_SERVE}"
        )
        argv = [
            "run", "-i", "--rm", "--name", self.lock_name, "--network", "none",
            "--label", f"mlcd.project={self.project}", "--label", f"mlcd.env={self.env}",
            *labels, "--user", "0", *self._lock_mounts(),
            "--entrypoint", "sh", self.router_image, "-c", init,
        ]  # fmt: skip
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            proc = docker.attached(argv, env=self.denv)
            # the container says LOCKED once it runs; a refused `docker run` says nothing
            try:  # the first time, the server pulls the router image first
                first = self._readline(proc, LOCK_WAIT * 10)
            except ValueError:
                first = b""
            if first.strip() == LOCKED.encode():
                self._lock = proc
                return
            proc.wait(timeout=30)
            err = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace")
            if "already in use" not in err:
                raise EnvironmentMissing(
                    f"cannot take the lock of `{self.env}` on {self.transport.target.url}: "
                    f"{docker.first_error(err)}"
                )
            data = self._inspect(self.lock_name)
            running = bool(data and (data.get("State") or {}).get("Running"))
            if running or time.monotonic() > deadline:
                found = self._lock_info(data) if data else None
                who = found.describe() if found else f"container {self.lock_name}"
                refusal = LockRefused(
                    f"environment `{self.env}` is locked by {who}: one rollout per "
                    "environment at a time",
                    hint=f"wait for it to finish, or see `mlcd status {self.env}`",
                )
                refusal.holder = found
                raise refusal
            time.sleep(0.3)  # a dead holder's container is being removed

    def _lock_mounts(self) -> list[str]:
        """The lock container's mounts: the state volume, which it reads and writes."""
        return ["-v", f"{self.volume}:{ROOT}"]

    def release(self) -> None:
        proc, self._lock = self._lock, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - a stuck client: the engine removes it with the pipe
            proc.kill()

    # ---------------------------------------------------------------- arms

    def container_name(self, version: str, color: str) -> str:
        return f"{self.base}-{safe_name(version)}-{color}".lower()

    def start_arm(self, version: str, image: str, color: str) -> Arm:
        name = self.container_name(version, color)
        self._ports.pop(name, None)
        self._run_detached(
            name, "--network", self.network, "--restart", "unless-stopped",
            "--env", f"MLCD_PORT={CONTAINER_PORT}", "--env", f"MLCD_MODEL_VERSION={version}",
            "--label", f"mlcd.project={self.project}", "--label", f"mlcd.env={self.env}",
            "--label", f"mlcd.version={version}", "--label", f"mlcd.color={color}",
            image,
        )  # fmt: skip
        return Arm(version=version, image=image, container=name, port=CONTAINER_PORT, color=color)

    def arm_state(self, arm: Arm) -> dict[str, object] | None:
        data = self._inspect(arm.container)
        found = data.get("State") if data else None
        return found if isinstance(found, dict) else None

    def restart_arm(self, arm: Arm) -> Arm:
        self._docker("start", arm.container)
        self._ports.pop(arm.container, None)
        return arm

    def arm_logs(self, arm: Arm, tail: int = 20) -> str:
        result = self._docker("logs", "--tail", str(tail), arm.container, check=False)
        return result.stdout + result.stderr

    def remove_arm(self, arm: Arm) -> None:
        self._wait_drained()
        found = self._ports.pop(arm.container, None)
        if found is not None:
            self.transport.drop_tunnel(found[0], CONTAINER_PORT)
        self._docker("rm", "--force", arm.container, check=False)

    def arm_port(self, arm: Arm) -> int:
        found = self._ports.get(arm.container)
        if found is None:
            data = self._inspect(arm.container) or {}
            networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
            address = str((networks.get(self.network) or {}).get("IPAddress") or "")
            if not address:
                raise EnvironmentMissing(
                    f"{arm.container} has no address on network {self.network} of "
                    f"{self.transport.target.url}"
                )
            found = (address, self.transport.tunnel(address, CONTAINER_PORT))
            self._ports[arm.container] = found
        return found[1]

    def arm_address(self, arm: Arm) -> str:
        return f"{arm.container}:{CONTAINER_PORT} on {self.transport.target.address}"

    # ---------------------------------------------------------------- router

    def _running(self, name: str) -> dict[str, Any] | None:
        data = self._inspect(name)
        return data if data and (data.get("State") or {}).get("Running") else None

    def router_running(self) -> bool:
        front = self._running(self.router)
        role = ((front or {}).get("Config") or {}).get("Labels") or {}
        return role.get("mlcd.role") == FRONT_ROLE and self._running(self.routes) is not None

    def _nginx(self, prefix: str) -> str:
        return f"nginx -p {prefix}/ -e {prefix}/logs/error.log"

    def _router_container(self, name: str, role: str, *args: str) -> None:
        self._docker("rm", "--force", name, check=False)
        self._run_detached(
            name, "--network", self.network, "--restart", "unless-stopped", "--user", USER,
            "--label", f"mlcd.project={self.project}", "--label", f"mlcd.env={self.env}",
            "--label", f"mlcd.role={role}", "-v", f"{self.volume}:{ROOT}", *args,
        )  # fmt: skip

    def route(self, route: Route, generation: int) -> str:
        self._check_lock()
        spec = RouterSpec(
            port=self.port,
            mode=route.mode,
            primary=tuple(
                Backend(CONTAINER_PORT, weight, host=arm.container) for arm, weight in route.primary
            ),
            shadow=Backend(CONTAINER_PORT, host=route.shadow.container) if route.shadow else None,
            generation=generation,
            labels={"env": self.env, "project": self.project},
            listen="0.0.0.0",  # noqa: S104 - the environment's address on the server  # nosec B104
            socket=ROUTER_SOCKET,
            routing=salted(self.routing, route),
        )
        self._apply_routes(render_routes(spec, Path(ROUTER_PREFIX)))
        if not self._front_checked:
            front = render_front(
                self.port, Path(ROUTER_PREFIX), listen=spec.listen, socket=ROUTER_SOCKET
            )
            self._apply_front(front)
            self._front_checked = True
        host, port = self.router_address
        wait_generation(
            host,
            port,
            generation,
            where=self.url,
            hint=f"docker logs {self.router} and {self.routes} on the server, and "
            f"{ROUTER_PREFIX}/logs/error.log, {FRONT_PREFIX}/logs/error.log in volume "
            f"{self.volume}",
        )
        return spec.describe()

    def _refused(self, name: str, result: ToolResult) -> EnvironmentMissing:
        return EnvironmentMissing(
            f"the router {name} on {self.transport.target.url} refused its new "
            f"configuration: {docker.first_error(result.stderr or result.stdout)}"
        )

    @staticmethod
    def _missing(result: ToolResult) -> bool:
        text = result.stderr.lower()
        return any(w in text for w in ("no such container", "is not running", "restarting"))

    def _reconfigure(self, container: str, script: str, text: str) -> ToolResult | None:
        """`script` run in the router `container` with `text` on its stdin: the result, or
        None when the container is missing (to be started); EnvironmentMissing when it
        refused the new configuration."""
        result = self._docker(
            "exec", "-i", container, "sh", "-c", script, input_text=text, check=False
        )
        if self._missing(result):
            return None
        if result.returncode != 0:
            raise self._refused(container, result)
        return result

    def _apply_routes(self, text: str) -> None:
        """The routing side: tested, swapped in and reloaded; started when it is missing."""
        conf, new = f"{ROUTER_PREFIX}/nginx.conf", f"{ROUTER_PREFIX}/nginx.conf.new"
        nginx = self._nginx(ROUTER_PREFIX)
        script = (
            f"cat > {new} && {nginx} -t -q -c {new} && mv -f {new} {conf} && "
            f"{{ {_WORKERS}; }} && {nginx} -c {conf} -s reload"
        )
        result = self._reconfigure(self.routes, script, text)
        if result is not None:
            self._retiring |= {p for p in result.stdout.split() if p.isdigit()}
            return
        self._request("conf", text.encode("utf-8"))
        # a socket left by a killed nginx would make its bind fail
        start = f'rm -f {ROUTER_SOCKET} && exec {nginx} -c {conf} -g "daemon off;"'
        self._router_container(
            self.routes, "router-routes", "--entrypoint", "sh", self.router_image, "-c", start
        )

    def _apply_front(self, text: str) -> None:
        """The client side: reloaded only when its text changed (a new mlcd), started when
        it is missing; a router of an older mlcd on the port (the routing nginx alone) is
        replaced by it."""
        conf, new = f"{FRONT_PREFIX}/nginx.conf", f"{FRONT_PREFIX}/nginx.conf.new"
        nginx = self._nginx(FRONT_PREFIX)
        found = self._running(self.router)
        labels = ((found or {}).get("Config") or {}).get("Labels") or {}
        if found is not None and labels.get("mlcd.role") == FRONT_ROLE:
            script = (
                f"cat > {new} && if cmp -s {new} {conf}; then rm -f {new}; else "
                f"{nginx} -t -q -c {new} && mv -f {new} {conf} && {nginx} -c {conf} -s reload; fi"
            )
            if self._reconfigure(self.router, script, text) is not None:
                return
        self._request("front", text.encode("utf-8"))
        self._router_container(
            self.router, FRONT_ROLE, "--publish", f"{self.port}:{self.port}",
            "--entrypoint", "nginx", self.router_image,
            "-p", f"{FRONT_PREFIX}/", "-c", conf, "-e", f"{FRONT_PREFIX}/logs/error.log",
            "-g", "daemon off;",
        )  # fmt: skip

    def _wait_drained(self, timeout: float = 30.0) -> None:
        """Wait until the router workers of earlier configurations have exited."""
        deadline = time.monotonic() + timeout
        while self._retiring and time.monotonic() < deadline:
            pids = " ".join(sorted(self._retiring))
            result = self._docker(
                "exec", self.routes, "sh", "-c",
                f"for p in {pids}; do [ -d /proc/$p ] && echo $p; done; true",
                check=False,
            )  # fmt: skip
            if result.returncode != 0:
                break
            self._retiring &= set(result.stdout.split())
            if self._retiring:
                time.sleep(0.2)
        self._retiring.clear()

    def close(self) -> None:
        self.release()
        self.transport.close()

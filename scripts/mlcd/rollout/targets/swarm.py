"""The swarm target: a Docker Swarm, driven through one manager's engine over SSH.

`target: swarm` with `host: ssh://user@manager[:port]` (the same transport, key and
known-hosts handling as docker-host: `mlcd.tools.ssh`). Per environment
(`mlcd-<project>-<env>`), all in the swarm:
- an overlay network `mlcd-<project>-<env>` (attachable), spanning the nodes;
- each release a replicated service `mlcd-<project>-<env>-<version>-<color>` with
  `swarm.replicas` tasks (spread over the nodes by the scheduler, `swarm.placement`
  constraints applied) and `--endpoint-mode dnsrr`: a service's virtual IP and the ingress
  routing mesh need IPVS, which not every kernel has, so nothing here relies on them;
- the router: a global service `mlcd-<project>-<env>-router` of `router.image`, one task per
  node matching `swarm.router-nodes`, each publishing the environment's port in host mode on
  its node. A task runs the two nginx of the other engine targets (`mlcd.rollout.router`):
  the client side that never reloads, and the routing side behind it on a Unix socket, whose
  upstreams are `tasks.<service>:8080`. nginx (open source, before 1.27.3) resolves an
  upstream's name when it loads its configuration, never after, and a `proxy_pass` with a
  variable and `resolver 127.0.0.11` would lose the upstream blocks the shared renderer's
  weights, sticky buckets and cross-arm retries stand on; so every change of the routes is a
  graceful reload that resolves the arms' task addresses afresh (and each `tasks.<service>`
  name expands to one upstream server per task, the arms having the same replica count so the
  weights stay the arms' weights). A task that died since the last reload is skipped by
  `proxy_next_upstream` (the request goes on to the next server). New routes reach each router
  task by an HTTP PUT to a control port it listens on on the overlay network only (nginx's
  WebDAV module writes the file atomically); the task's shell loop tests it and reloads.
  A router task started later (a node back, a reschedule) starts from the routes the service
  was created with, which name the stable arm: `router_running` sees a task that does not
  serve the environment's last generation, and reconciliation routes again;
- a probe: a plain container `mlcd-<project>-<env>-probe` on the manager (nginx), attached to
  the overlay network and to the manager's default bridge. SSH tunnels reach it on the bridge;
  it forwards to one task of an arm by address (`/task/<ip>/metrics`: the judge reads every
  task and sums), to an arm as a whole (a port per arm, to `tasks.<service>`: readiness and
  synthetic traffic), and to a router task's control port;
- the state: Swarm configs `mlcd-<project>-<env>-state-<n>` (labelled `mlcd.state`), one
  per save, the highest `n` the current one, older ones removed after the new one exists.
  A config is created whole or not at all, kept in the managers' Raft log (every manager
  has it, it outlives any node), and read by any clone through any manager;
- the lock: as docker-host's, a `docker run -i --rm` container on the manager whose stdin
  this process holds (container names are unique on an engine; it is gone the moment its
  holder dies or its SSH connection drops). A 0-replica service would be swarm-wide but
  outlive a killed holder; every clone of a project names the same manager in `host:`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import json
import re
import time
from pathlib import Path
from typing import Any

from mlcd.config import SwarmSection
from mlcd.errors import EnvironmentMissing, GateFailed
from mlcd.rollout.judge import ArmWindow
from mlcd.rollout.metrics import (
    ArmReader,
    MetricsError,
    Recent,
    Snapshot,
    http_get,
    parse_prometheus,
    parse_recent,
    snapshot,
    window,
)
from mlcd.rollout.router import Backend, RouterSpec, Routing, render_front, render_routes
from mlcd.rollout.state import Arm, EnvState, safe_name
from mlcd.rollout.targets.base import (
    CONTAINER_PORT,
    Route,
    http_status,
    salted,
    wait_generation,
)
from mlcd.rollout.targets.dockerhost import USER, DockerHostTarget
from mlcd.tools import docker
from mlcd.tools.ssh import SshTransport

PREFIX = "/tmp/mlcd/router"  # noqa: S108 - inside the router task's container  # nosec B108
ROUTES_SOCKET = f"{PREFIX}/routes.sock"
PROBE_DIR = "/tmp/mlcd/probe"  # noqa: S108 - inside the probe container  # nosec B108
PROBE_PORT = 8099
ARM_PORTS = (8100, 8999)  # the probe's port per arm: 8100 + hash of the service's name
READY_TIMEOUT = 600.0  # a first pull of a release on every node
_NAME_MAX = 63  # a service's name is a DNS label
_TASK_HISTORY = 5  # docker service ps lists a slot's last tasks

# The router task's main process (POSIX sh): start both nginx from the service's
# environment, then apply each configuration PUT into incoming/ (tested first), and end
# (Swarm restarts the task) when either nginx dies. SIGTERM/SIGQUIT: both quit gracefully.
_ROUTER = f"""
P={PREFIX}; F=$P/front
mkdir -p $P/logs $P/scratch $P/incoming $F/logs $F/scratch || exit 1
printf '%s' "$MLCD_ROUTES" > $P/nginx.conf && printf '%s' "$MLCD_FRONT" > $F/nginx.conf || exit 1
R="nginx -p $P/ -e $P/logs/error.log -c $P/nginx.conf"
S="nginx -p $F/ -e $F/logs/error.log -c $F/nginx.conf"
$R && $S || exit 1
trap '$S -s quit; $R -s quit; exit 0' TERM QUIT INT
while sleep 0.2; do
  if [ -f $P/incoming/routes.conf ] && ! cmp -s $P/incoming/routes.conf $P/nginx.conf; then
    cp $P/incoming/routes.conf $P/next.conf &&
    if nginx -p $P/ -e $P/logs/error.log -t -q -c $P/next.conf; then
      mv -f $P/next.conf $P/nginx.conf && $R -s reload
    else mv -f $P/incoming/routes.conf $P/incoming/rejected.conf; fi
  fi
  kill -0 "$(cat $P/nginx.pid)" 2>/dev/null && kill -0 "$(cat $F/nginx.pid)" 2>/dev/null || exit 1
done
"""
_PROBE = (
    f"mkdir -p {PROBE_DIR}/scratch && printf '%s' \"$MLCD_PROBE\" > {PROBE_DIR}/nginx.conf && "
    f"exec nginx -p {PROBE_DIR}/ -e {PROBE_DIR}/error.log -c {PROBE_DIR}/nginx.conf "
    '-g "daemon off;"'
)


def service_name(*parts: str) -> str:
    """A Swarm service's (or config's) name: lowercase letters, digits and dashes (a DNS
    label, so that `tasks.<name>` resolves), at most 63 characters."""
    text = re.sub(r"[^a-z0-9-]+", "-", "-".join(safe_name(p) for p in parts).lower()).strip("-")
    if len(text) <= _NAME_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: _NAME_MAX - 9].rstrip('-')}-{digest}"


def arm_ports(services: list[str]) -> dict[str, int]:
    """The probe's port for each arm's service: from a hash of its name, the next free one on
    a collision (the same set of names gives the same ports)."""
    low, high = ARM_PORTS
    ports: dict[str, int] = {}
    for name in sorted(services):
        port = low + int(hashlib.sha256(name.encode()).hexdigest(), 16) % (high - low)
        while port in ports.values():
            port = low if port >= high else port + 1
        ports[name] = port
    return ports


def probe_config(ports: dict[str, int], control: int) -> str:
    """The probe's nginx: a task by address, a router task's control port, an arm by port."""
    d = PROBE_DIR
    lines = [
        "worker_processes 1;",
        f"pid {d}/nginx.pid;",
        f"error_log {d}/error.log warn;",
        "events { worker_connections 1024; }",
        "http {",
        "  access_log off;",
        "  server_tokens off;",
        *(f"  {k}_temp_path {d}/scratch/{k};" for k in ("proxy", "fastcgi", "uwsgi", "scgi")),
        f"  client_body_temp_path {d}/scratch/body;",
        "  client_max_body_size 8m;",
        "  client_body_buffer_size 8m;",
        "  resolver 127.0.0.11 valid=1s ipv6=off;",  # Docker's DNS on the overlay network
        "  proxy_connect_timeout 3s;",
        "  proxy_read_timeout 60s;",
        "  proxy_next_upstream off;",
        "  server {",
        f"    listen {PROBE_PORT};",
        r"    location ~ ^/task/(?<ip>[0-9.]+)(?<rest>/.*)$ {",
        f"      proxy_pass http://$ip:{CONTAINER_PORT}$rest$is_args$args;",
        "    }",
        r"    location ~ ^/router/(?<ip>[0-9.]+)(?<rest>/.*)$ {",
        f"      proxy_pass http://$ip:{control}$rest;",
        "    }",
        "  }",
    ]
    for name, port in sorted(ports.items(), key=lambda item: item[1]):
        lines += [
            "  server {",
            f"    listen {port};",
            f"    set $mlcd_arm tasks.{name};",
            "    proxy_next_upstream error timeout non_idempotent;",
            f"    location / {{ proxy_pass http://$mlcd_arm:{CONTAINER_PORT}; }}",
            "  }",
        ]
    return "\n".join([*lines, "}"]) + "\n"


def control_server(port: int) -> str:
    """The router task's control port (overlay network only): PUT /incoming/routes.conf."""
    return "\n".join(
        [
            "  server {",
            f"    listen {port};",
            "    location = /incoming/routes.conf {",
            f"      root {PREFIX};",
            "      dav_methods PUT;",
            "      limit_except PUT { deny all; }",
            "    }",
            "    location / { return 404; }",
            "  }",
        ]
    )


def add_windows(windows: list[ArmWindow]) -> ArmWindow:
    """One arm's window from its tasks' windows: counts, buckets and latencies summed."""

    def buckets(attr: str) -> tuple[tuple[float, int], ...]:
        total: dict[float, int] = {}
        for w in windows:
            for bound, count in getattr(w, attr):
                total[bound] = total.get(bound, 0) + count
        return tuple(sorted(total.items()))

    classes: dict[str, int] = {}
    for w in windows:
        for key, count in w.classes.items():
            classes[key] = classes.get(key, 0) + count
    return ArmWindow(
        requests=sum(w.requests for w in windows),
        errors=sum(w.errors for w in windows),
        latencies_ms=tuple(x for w in windows for x in w.latencies_ms),
        latency_buckets=buckets("latency_buckets"),
        classes=classes,
        score_buckets=buckets("score_buckets"),
    )


def add_snapshots(snaps: list[Snapshot]) -> Snapshot:
    def merged(attr: str) -> dict[Any, float]:
        total: dict[Any, float] = {}
        for s in snaps:
            for key, value in getattr(s, attr).items():
                total[key] = total.get(key, 0.0) + value
        return total

    versions = [s.model_version for s in snaps if s.model_version]
    return Snapshot(
        requests=sum(s.requests for s in snaps),
        errors=sum(s.errors for s in snaps),
        latency_buckets=merged("latency_buckets"),
        classes=merged("classes"),
        score_buckets=merged("score_buckets"),
        model_version=versions[0] if versions else None,
        start_time=None,  # per task: `SwarmArmReader` compares each task's own
    )


class SwarmArmReader(ArmReader):
    """An arm's metrics as the sum over its tasks, each read through the probe.

    Each task keeps its own baseline. A task that appears (a reschedule, a node back) starts
    from zero; a task whose process start time changed (its container restarted) too: a
    restart is neither an error burst nor a reason to drop the interval. A task that
    vanished or does not answer (its node died) adds nothing; the reading fails only when
    no task answers.
    """

    def __init__(self, target: SwarmTarget, service: str, *, recent_limit: int = 1000) -> None:
        super().__init__(0, recent_limit=recent_limit)
        self.target = target
        self.service = service
        self.tasks: dict[str, Snapshot] = {}
        self.skipped: list[str] = []  # tasks the last reading could not read

    def _get(self, ip: str, path: str) -> bytes:
        port = self.target.probe_port()
        status, body = http_get(port, f"/task/{ip}{path}")
        if status != 200:
            raise MetricsError(f"GET {path} on task {ip} of {self.service} answered {status}")
        return body

    def _task_snapshot(self, ip: str) -> Snapshot:
        body = self._get(ip, "/metrics")
        return snapshot(parse_prometheus(body.decode("utf-8", "replace")))

    def _task_recent(self, ip: str, limit: int) -> list[Recent]:
        body = self._get(ip, f"/v1/recent-predictions?limit={limit}")
        try:
            return parse_recent(json.loads(body))
        except json.JSONDecodeError as exc:
            raise MetricsError(f"/v1/recent-predictions of task {ip} is not JSON: {exc}") from exc

    def _each(self) -> dict[str, tuple[str, Snapshot]]:
        """Every task that answers: name -> (address, snapshot)."""
        found: dict[str, tuple[str, Snapshot]] = {}
        self.skipped = []
        tasks = self.target.tasks(self.service)
        for name, ip in tasks.items():
            try:
                found[name] = (ip, self._task_snapshot(ip))
            except MetricsError as exc:
                self.skipped.append(f"{name}: {exc}")
        if not found:
            why = "; ".join(self.skipped) or "no task runs"
            raise MetricsError(f"no task of {self.service} answered ({why})")
        return found

    def read_snapshot(self) -> Snapshot:
        return add_snapshots([snap for _, snap in self._each().values()])

    def read_recent(self, limit: int | None = None) -> list[Recent]:
        wanted = self.recent_limit if limit is None else min(limit, self.recent_limit)
        out: list[Recent] = []
        for ip in self.target.tasks(self.service).values():
            with contextlib.suppress(MetricsError):
                out += self._task_recent(ip, wanted)
        return out

    def start(self) -> None:
        found = self._each()
        self.tasks = {name: snap for name, (_, snap) in found.items()}
        self.last = add_snapshots(list(self.tasks.values()))
        self.seen = set()
        for ip, _ in found.values():
            with contextlib.suppress(MetricsError):
                self.seen |= {r.request_id for r in self._task_recent(ip, self.recent_limit)}

    def interval(self) -> tuple[ArmWindow, list[Recent]]:
        found = self._each()
        windows: list[ArmWindow] = []
        everything: list[Recent] = []
        for name, (ip, current) in found.items():
            before = self.tasks.get(name)
            if before is None or before.start_time != current.start_time:
                before = Snapshot(start_time=current.start_time)  # new or restarted: from zero
            since = current.requests - before.requests
            wanted = min(self.recent_limit, int(max(since, 0) * 1.5) + 50)
            try:
                listed = self._task_recent(ip, wanted)
            except MetricsError:
                listed = []
            everything += listed
            latencies = [
                r.latency_ms
                for r in listed
                if r.request_id not in self.seen
                and r.latency_ms is not None
                and 200 <= r.status < 300
            ]
            try:
                windows.append(window(before, current, latencies))
            except MetricsError:
                # counters that went down under the same start time: the task restarted
                # within one clock second; count it from zero
                windows.append(window(Snapshot(start_time=current.start_time), current, latencies))
        self.tasks = {name: snap for name, (_, snap) in found.items()}
        self.seen = {r.request_id for r in everything}
        self.last = add_snapshots(list(self.tasks.values()))
        return add_windows(windows), everything


class SwarmTarget(DockerHostTarget):
    kind = "swarm"

    def __init__(
        self,
        project: str,
        env: str,
        port: int,
        transport: SshTransport,
        router_image: str,
        *,
        swarm: SwarmSection,
        routing: Routing | None = None,
    ) -> None:
        super().__init__(project, env, port, transport, router_image, routing=routing)
        self.swarm = swarm
        self.base = service_name("mlcd", project, env)
        self.network = self.base
        self.router = service_name(self.base, "router")
        self.probe = service_name(self.base, "probe")
        self.lock_name = service_name(self.base, "lock")
        self.state_label = f"mlcd.state={self.base}"
        self.control = 18099 if port != 18099 else 18098
        self._seq = 0  # the number of the state config this process read or wrote last
        self._known: list[tuple[int, str]] | None = None  # the state configs there are
        self._arm_ports: dict[str, int] = {}
        self._probe_ip = ""
        self._router_hosts: list[str] = []
        self._generation: int | None = None

    # ---------------------------------------------------------------- plumbing

    def _labels(self, *extra: str) -> list[str]:
        pairs = (f"mlcd.project={self.project}", f"mlcd.env={self.env}", *extra)
        return [arg for pair in pairs for arg in ("--label", pair)]

    def acquire(self, command: str) -> None:
        super().acquire(command)
        self._known = None  # what was read before the lock may have changed since

    def _lock_mounts(self) -> list[str]:
        return []  # the state is in Swarm configs, not in a volume

    def _ensure_network(self) -> None:
        if self._docker("network", "inspect", self.network, check=False).returncode != 0:
            result = self._docker(
                "network", "create", "--driver", "overlay", "--attachable",
                *self._labels(), self.network, check=False,
            )  # fmt: skip
            if result.returncode != 0 and "already exists" not in result.stderr:
                raise EnvironmentMissing(
                    f"cannot create the overlay network {self.network} on "
                    f"{self.transport.target.url}: {docker.first_error(result.stderr)}",
                    hint="the host must be a manager of an active swarm (docker swarm init)",
                )

    def _endpoints(self) -> dict[str, list[tuple[str, str, str]]]:
        """The overlay network's services -> [(task, address, node address)] (as the
        manager knows them; empty when the network does not exist)."""
        result = self._docker(
            "network", "inspect", "--verbose", "--format", "{{json .Services}}", self.network,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return {}
        data = json.loads(result.stdout or "null") or {}
        out: dict[str, list[tuple[str, str, str]]] = {}
        for service, found in data.items():
            for task in (found or {}).get("Tasks") or []:
                ip = str(task.get("EndpointIP") or "")
                host = str((task.get("Info") or {}).get("Host IP") or "")
                if ip:
                    out.setdefault(service, []).append((str(task.get("Name", "")), ip, host))
        return out

    def tasks(self, service: str) -> dict[str, str]:
        """The running tasks of a service on the network: task name -> address."""
        return {name: ip for name, ip, _ in self._endpoints().get(service, [])}

    def _running_tasks(self, service: str) -> tuple[int, list[str]] | None:
        """(running tasks, errors of failed ones) of a service; None when it does not exist."""
        result = self._docker(
            "service", "ps", service, "--no-trunc", "--format",
            "{{.DesiredState}}|{{.CurrentState}}|{{.Error}}", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        running, errors = 0, []
        for line in result.stdout.splitlines():
            desired, current, error = [*line.split("|", 2), "", ""][:3]
            if desired == "Running" and current.startswith("Running"):
                running += 1
            elif error.strip():
                errors.append(error.strip())
        return running, errors

    def _desired(self, service: str) -> int:
        result = self._docker(
            "service", "ls", "--filter", f"name={service}", "--format", "{{.Name}} {{.Replicas}}",
            check=False,
        )  # fmt: skip
        for line in result.stdout.splitlines():
            name, _, replicas = line.partition(" ")
            if name == service and "/" in replicas:
                return int(replicas.split("/")[1].split()[0] or 0)
        return 0

    def _wait_running(self, service: str, what: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every task the service wants runs (the scheduler placed them and the
        nodes pulled the image); EnvironmentMissing with the tasks' errors when it fails."""
        deadline = time.monotonic() + timeout
        errors: list[str] = []
        while time.monotonic() < deadline:
            found = self._running_tasks(service)
            if found is None:
                raise EnvironmentMissing(f"the service {service} is gone")
            running, errors = found
            wanted = self._desired(service)
            if wanted and running >= wanted:
                return
            if len(errors) >= _TASK_HISTORY * max(wanted, 1):
                break  # every slot keeps failing
            time.sleep(0.5)
        raise EnvironmentMissing(
            f"{what} ({service}) did not run on the swarm of {self.transport.target.url}"
            + (f": {errors[0]}" if errors else f" within {timeout:g} s"),
            hint="every node the tasks may run on must reach the image registry; see "
            f"`docker service ps --no-trunc {service}` on the manager",
        )

    def _create_service(self, name: str, *args: str) -> None:
        for _ in range(3):
            result = self._docker(
                "service", "create", "--detach", "--name", name, "--network", self.network,
                "--with-registry-auth", *args, check=False, timeout=600,
            )  # fmt: skip
            if result.returncode == 0:
                return
            err = result.stderr.lower()
            if "already exists" in err:
                self._docker("service", "rm", name, check=False)
                time.sleep(1)
            elif "network" in err and "not found" in err:
                self._ensure_network()
            else:
                raise EnvironmentMissing(
                    f"`docker service create {name}` on {self.transport.target.url} failed: "
                    f"{docker.first_error(result.stderr)}",
                    hint="the host must be a manager of an active swarm",
                )
        raise EnvironmentMissing(f"`docker service create {name}` kept failing")

    # ---------------------------------------------------------------- where it answers

    def _hosts(self) -> list[str]:
        """The addresses of the nodes the router runs on (the manager's before it runs)."""
        if not self._router_hosts:
            hosts = {host for _, _, host in self._endpoints().get(self.router, []) if host}
            self._router_hosts = sorted(hosts)
        return self._router_hosts or [self.transport.target.address]

    @property
    def url(self) -> str:
        return f"http://{self._hosts()[0]}:{self.port}"

    @property
    def router_address(self) -> tuple[str, int]:
        return (self._hosts()[0], self.port)

    def describe(self) -> str:
        nodes = ", ".join(self._hosts())
        return f"swarm target {self.transport.target.url}, router on {nodes} port {self.port}"

    # ---------------------------------------------------------------- state

    @property
    def state_location(self) -> str:
        return f"Swarm configs {self.base}-state-* on {self.transport.target.url}"

    def _state_configs(self) -> list[tuple[int, str]]:
        result = self._docker(
            "config", "ls", "--filter", f"label={self.state_label}", "--format", "{{.Name}}"
        )
        found = []
        for name in result.stdout.split():
            tail = name.rsplit("-", 1)[-1]
            if tail.isdigit():
                found.append((int(tail), name))
        return sorted(found)

    def load_state(self) -> EnvState:
        configs = self._state_configs()
        self._known = configs
        if not configs:
            self._seq = 0
            return EnvState(env=self.env, project=self.project)
        self._seq, name = configs[-1]
        raw = self._docker("config", "inspect", "--format", "{{json .Spec.Data}}", name).stdout
        try:
            data = json.loads(base64.b64decode(json.loads(raw)).decode("utf-8"))
            if not data:
                return EnvState(env=self.env, project=self.project)
            state = EnvState.from_json(data)
            self._generation = state.router_generation or None
            return state
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise EnvironmentMissing(
                f"{self.state_location}: the environment's state {name} is unreadable ({exc})"
            ) from exc

    def save_state(self, state: EnvState) -> None:
        """A new config, then the older ones removed. Under the lock nobody else writes, so
        the configs this process read or wrote are all there is (one `docker config ls`
        saved per write); a name taken after all (a state read before the lock was taken)
        makes it list them and try again."""
        self._check_lock()
        text = json.dumps(state.to_json(), indent=2, sort_keys=True, default=str) + "\n"
        older = self._known if self._known is not None else self._state_configs()
        for _ in range(2):
            seq = max([self._seq, *(n for n, _ in older)]) + 1
            name = f"{self.base[: _NAME_MAX - 10]}-state-{seq:08d}"
            result = self._docker(
                "config", "create", *self._labels(self.state_label), name, "-",
                input_text=text, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                break
            if "already exists" not in result.stderr:
                raise EnvironmentMissing(
                    f"cannot write the state of `{self.env}` ({self.state_location}): "
                    f"{docker.first_error(result.stderr)}"
                )
            older = self._state_configs()
        else:
            raise EnvironmentMissing(f"cannot write the state of `{self.env}`: {name} exists")
        self._seq = seq
        self._known = [(seq, name)]
        self._generation = state.router_generation or None
        for _, old in older:  # the new one exists: the old ones go (a failure leaves them)
            if old != name:
                self._docker("config", "rm", old, check=False)

    # ---------------------------------------------------------------- arms

    def container_name(self, version: str, color: str) -> str:
        return service_name(self.base, version, color)

    def start_arm(self, version: str, image: str, color: str) -> Arm:
        name = self.container_name(version, color)
        self._ensure_network()
        constraints = [arg for c in self.swarm.placement for arg in ("--constraint", c)]
        self._create_service(
            name, "--endpoint-mode", "dnsrr", "--replicas", str(self.swarm.replicas),
            "--restart-condition", "any", *constraints,
            "--env", f"MLCD_PORT={CONTAINER_PORT}", "--env", f"MLCD_MODEL_VERSION={version}",
            *self._labels("mlcd.role=arm", f"mlcd.version={version}", f"mlcd.color={color}"),
            "--container-label", f"mlcd.env={self.env}", image,
        )  # fmt: skip
        self._wait_running(name, f"release {version}")
        return Arm(version=version, image=image, container=name, port=CONTAINER_PORT, color=color)

    def arm_state(self, arm: Arm) -> dict[str, object] | None:
        found = self._running_tasks(arm.container)
        if found is None:
            return None
        running, errors = found
        return {
            "Running": running > 0,
            "Tasks": running,
            "ExitCode": None,
            "Error": errors[0] if errors else "",
        }

    def restart_arm(self, arm: Arm) -> Arm:
        self._docker("service", "update", "--detach", "--force", arm.container)
        self._wait_running(arm.container, f"release {arm.version}")
        return arm

    def arm_logs(self, arm: Arm, tail: int = 20) -> str:
        result = self._docker(
            "service", "logs", "--tail", str(tail), "--no-task-ids", arm.container, check=False
        )
        return result.stdout + result.stderr

    def remove_arm(self, arm: Arm) -> None:
        port = self._arm_ports.pop(arm.container, None)
        if port is not None and self._probe_ip:
            self.transport.drop_tunnel(self._probe_ip, port)
        self._docker("service", "rm", arm.container, check=False)

    def _arm_services(self) -> list[str]:
        result = self._docker(
            "service", "ls", "--filter", f"label=mlcd.env={self.env}",
            "--filter", f"label=mlcd.project={self.project}", "--filter", "label=mlcd.role=arm",
            "--format", "{{.Name}}", check=False,
        )  # fmt: skip
        return result.stdout.split()

    def _ensure_probe(self, services: list[str]) -> None:
        """The probe container on the manager, serving a port for each of `services`."""
        ports = arm_ports(services)
        text = probe_config(ports, self.control)
        data = self._running(self.probe)
        if data is not None:
            script = (
                f"cat > {PROBE_DIR}/next.conf && nginx -p {PROBE_DIR}/ -e {PROBE_DIR}/error.log "
                f"-t -q -c {PROBE_DIR}/next.conf && mv -f {PROBE_DIR}/next.conf "
                f"{PROBE_DIR}/nginx.conf && nginx -p {PROBE_DIR}/ -e {PROBE_DIR}/error.log "
                f"-c {PROBE_DIR}/nginx.conf -s reload"
            )
            result = self._docker("exec", "-i", self.probe, "sh", "-c", script, input_text=text,
                                  check=False)  # fmt: skip
            if result.returncode != 0:
                raise EnvironmentMissing(
                    f"the probe {self.probe} refused its configuration: "
                    f"{docker.first_error(result.stderr or result.stdout)}"
                )
            time.sleep(0.3)  # the new workers take the new ports
        else:
            self._ensure_network()
            self._run_detached(
                self.probe, "--network", self.network, "--restart", "unless-stopped",
                "--user", USER, *self._labels("mlcd.role=probe"), "--env", f"MLCD_PROBE={text}",
                "--entrypoint", "sh", self.router_image, "-c", _PROBE,
            )  # fmt: skip
            connect = self._docker("network", "connect", "bridge", self.probe, check=False)
            if connect.returncode != 0 and "already" not in connect.stderr:
                raise EnvironmentMissing(
                    f"cannot connect {self.probe} to the manager's bridge: "
                    f"{docker.first_error(connect.stderr)}"
                )
            data = self._inspect(self.probe) or {}
        networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
        address = str((networks.get("bridge") or {}).get("IPAddress") or "")
        if not address:
            data = self._inspect(self.probe) or {}
            networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
            address = str((networks.get("bridge") or {}).get("IPAddress") or "")
        if not address:
            raise EnvironmentMissing(f"the probe {self.probe} has no address on the bridge")
        if address != self._probe_ip:
            for port in {PROBE_PORT, *self._arm_ports.values()}:
                if self._probe_ip:
                    self.transport.drop_tunnel(self._probe_ip, port)
        self._probe_ip = address
        self._arm_ports = ports

    def probe_port(self) -> int:
        """A 127.0.0.1 port of this machine at which the probe answers."""
        if not self._probe_ip:
            self._ensure_probe(self._arm_services())
        return self.transport.tunnel(self._probe_ip, PROBE_PORT)

    def arm_port(self, arm: Arm) -> int:
        if arm.container not in self._arm_ports or not self._probe_ip:
            self._ensure_probe(sorted({*self._arm_services(), arm.container}))
        return self.transport.tunnel(self._probe_ip, self._arm_ports[arm.container])

    def reader(self, arm: Arm) -> ArmReader:
        return SwarmArmReader(self, arm.container)

    def arm_address(self, arm: Arm) -> str:
        where = self.transport.target.url
        return f"service {arm.container} ({self.swarm.replicas} tasks) on {where}"

    # ---------------------------------------------------------------- router

    def router_running(self) -> bool:
        found = self._running_tasks(self.router)
        wanted = self._desired(self.router)
        if found is None or not wanted or found[0] < wanted:
            return False
        if self._generation is None:
            return True
        return all(self._serves(host, self._generation) for host in self._hosts())

    def _serves(self, host: str, generation: int) -> bool:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            status, body = http_status(host, self.port, "/_mlcd/router")
            return status == 200 and f'"generation": {generation},'.encode() in body
        return False

    def route(self, route: Route, generation: int) -> str:
        self._check_lock()
        spec = RouterSpec(
            port=self.port,
            mode=route.mode,
            primary=tuple(
                Backend(CONTAINER_PORT, weight, host=f"tasks.{arm.container}")
                for arm, weight in route.primary
            ),
            shadow=Backend(CONTAINER_PORT, host=f"tasks.{route.shadow.container}")
            if route.shadow
            else None,
            generation=generation,
            labels={"env": self.env, "project": self.project},
            listen="0.0.0.0",  # noqa: S104 - the environment's port on the router's nodes  # nosec B104
            socket=ROUTES_SOCKET,
            routing=salted(self.routing, route),
            # every task of both arms: a request goes on past the tasks of a dead node
            tries=max(2, 2 * self.swarm.replicas),
        )
        routes = render_routes(spec, Path(PREFIX))
        if self._running_tasks(self.router) is None:
            self._start_router(routes, Path(PREFIX))
        else:
            self._push(routes)
        self._router_hosts = []
        for host in self._hosts():
            wait_generation(
                host,
                self.port,
                generation,
                where=f"http://{host}:{self.port}",
                hint=f"docker service logs {self.router} on the manager, and "
                f"{PREFIX}/logs/error.log in its tasks",
            )
        self._generation = generation
        return spec.describe()

    def _start_router(self, routes: str, prefix: Path) -> None:
        self._ensure_network()
        front = render_front(self.port, prefix, listen="0.0.0.0", socket=ROUTES_SOCKET)  # noqa: S104  # nosec B104
        front = front.rstrip()[:-1] + control_server(self.control) + "\n}\n"
        constraints = [arg for c in self.swarm.router_nodes for arg in ("--constraint", c)]
        self._create_service(
            self.router, "--mode", "global", *constraints,
            "--publish", f"mode=host,target={self.port},published={self.port}",
            "--restart-condition", "any", "--stop-signal", "SIGQUIT", "--user", USER,
            "--env", f"MLCD_ROUTES={routes}", "--env", f"MLCD_FRONT={front}",
            *self._labels("mlcd.role=router"), "--entrypoint", "sh",
            self.router_image, "-c", _ROUTER,
        )  # fmt: skip
        self._wait_running(self.router, "the router")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._endpoints().get(self.router):
            time.sleep(0.3)

    def _push(self, routes: str) -> None:
        """The routes to every router task, through the probe to its control port."""
        tasks = self._endpoints().get(self.router, [])
        if not tasks:
            raise EnvironmentMissing(
                f"the router {self.router} has no running task on the swarm of "
                f"{self.transport.target.url}",
                hint=f"docker service ps --no-trunc {self.router} on the manager",
            )
        port = self.probe_port()
        for name, ip, host in tasks:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            try:
                conn.request("PUT", f"/router/{ip}/incoming/routes.conf", body=routes.encode())
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                raise GateFailed(
                    f"the router task {name} on {host} took no routes ({exc})"
                ) from exc
            finally:
                conn.close()
            if status not in (200, 201, 204):
                raise GateFailed(
                    f"the router task {name} on {host} refused its routes (HTTP {status})"
                )

    # ---------------------------------------------------------------- end

    def down(self) -> list[str]:
        """Remove the environment's services (arms, router), probe, state configs and
        network; one line per thing removed; a second call finds nothing and says nothing."""
        removed: list[str] = []
        result = self._docker(
            "service", "ls", "--filter", f"label=mlcd.env={self.env}",
            "--filter", f"label=mlcd.project={self.project}", "--format", "{{.Name}}",
            check=False,
        )  # fmt: skip
        services = result.stdout.split()
        if services:
            self._docker("service", "rm", *services, check=False)
            removed += [f"service {name}" for name in services]
        if self._inspect(self.probe) is not None:
            self._docker("rm", "--force", self.probe, check=False)
            removed.append(f"container {self.probe}")
        for _, name in self._state_configs():
            if self._docker("config", "rm", name, check=False).returncode == 0:
                removed.append(f"config {name}")
        if self._docker("network", "inspect", self.network, check=False).returncode == 0:
            deadline = time.monotonic() + 60  # the tasks' endpoints go first
            while True:
                gone = self._docker("network", "rm", self.network, check=False)
                if gone.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if gone.returncode != 0:
                raise EnvironmentMissing(
                    f"the network {self.network} on {self.transport.target.url} is still in "
                    f"use: {docker.first_error(gone.stderr)}"
                )
            while time.monotonic() < deadline:  # a swarm network goes when its nodes let go
                if self._docker("network", "inspect", self.network, check=False).returncode:
                    break
                time.sleep(0.5)
            removed.append(f"network {self.network}")
        self._arm_ports.clear()
        self._probe_ip = ""
        self._router_hosts = []
        self._seq = 0
        self._known = None
        return removed

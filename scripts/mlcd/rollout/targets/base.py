"""The deploy-target interface: what the rollout controller asks of the place a release runs.

A target runs releases as *arms* (one container each) behind a *router* and keeps the
environment's *state* and *lock*. `local` does this on this machine's Docker engine with an
nginx process on 127.0.0.1 and a state folder; `docker-host` on a server's Docker engine over
SSH with the router as a container there and the state in a volume there. The controller
(`mlcd.rollout.controller`) writes the strategies and the judge's calls once over this
interface; the Kubernetes target hands the same work to Argo Rollouts instead
(`mlcd.rollout.targets.kubernetes`).
"""

from __future__ import annotations

import contextlib
import http.client
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from mlcd.errors import GateFailed
from mlcd.rollout.loadgen import LoadGenerator
from mlcd.rollout.metrics import ArmReader, MetricsError, http_get
from mlcd.rollout.router import Mode, Routing
from mlcd.rollout.state import Arm, EnvState

CONTAINER_PORT = 8080
GENERATION_TIMEOUT = 15.0


@dataclass(frozen=True)
class Owner:
    """Who runs a command: written into the lock and into the rollout it starts."""

    pid: int
    start: str
    host: str


@dataclass(frozen=True)
class Route:
    """What the router should do: arms with weights, and an arm that gets a mirrored copy."""

    mode: Mode
    primary: tuple[tuple[Arm, int], ...]
    shadow: Arm | None = None


def salted(routing: Routing, route: Route) -> Routing:
    """The rollout's routing with the candidate's version as the sticky buckets' salt (the
    same at every step of one rollout, different for the next release)."""
    candidate = route.shadow if route.shadow is not None else route.primary[-1][0]
    return routing.salted(candidate.version)


def http_status(host: str, port: int, path: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET http://HOST:PORT/PATH (127.0.0.1 or the target's own address only)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_generation(host: str, port: int, generation: int, *, where: str, hint: str) -> None:
    """Wait until the router at HOST:PORT serves configuration `generation`."""
    deadline = time.monotonic() + GENERATION_TIMEOUT
    needle = f'"generation": {generation},'.encode()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = http_status(host, port, "/_mlcd/router")
            if status == 200 and needle in body:
                return
        time.sleep(0.05)
    raise GateFailed(
        f"the router on {where} did not take configuration {generation} within "
        f"{GENERATION_TIMEOUT:g} s",
        hint=hint,
    )


class Target(ABC):
    """One environment's place to run: arms, router, state and lock."""

    kind: str = ""

    # ---------------------------------------------------------------- where it answers

    @property
    @abstractmethod
    def url(self) -> str:
        """The environment's address for clients, e.g. http://10.0.0.5:8081."""

    @property
    @abstractmethod
    def router_address(self) -> tuple[str, int]:
        """(host, port) at which this machine reaches the router (synthetic traffic)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for `mlcd status`: the target, where the router listens."""

    # ---------------------------------------------------------------- state and lock

    @abstractmethod
    def load_state(self) -> EnvState:
        """The environment's state as the target keeps it (empty when it has none yet)."""

    @abstractmethod
    def save_state(self, state: EnvState) -> None:
        """Write the state atomically (a reader sees the old or the new, never half)."""

    @property
    @abstractmethod
    def state_location(self) -> str:
        """Where the state lives, for people (a path, or a volume on a host)."""

    @abstractmethod
    def acquire(self, command: str) -> None:
        """Take the environment's lock, or raise GateFailed naming the live holder."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back (a dead holder's lock is released by the target itself)."""

    @abstractmethod
    def holder(self) -> str | None:
        """Who holds the lock now (without taking it), None when nobody does."""

    @abstractmethod
    def owner(self) -> Owner:
        """This process, as it appears in the lock and the rollouts it starts."""

    # ---------------------------------------------------------------- arms

    @abstractmethod
    def container_name(self, version: str, color: str) -> str:
        """The name `start_arm` gives a release's container (recorded in the state before
        the container is created, so that recovery knows it)."""

    @abstractmethod
    def start_arm(self, version: str, image: str, color: str) -> Arm:
        """Start a release's container (pulling its image by digest where needed)."""

    @abstractmethod
    def arm_state(self, arm: Arm) -> dict[str, object] | None:
        """The container's State (Running, ExitCode, …), None when it does not exist."""

    def arm_running(self, arm: Arm) -> bool:
        found = self.arm_state(arm)
        return bool(found and found.get("Running"))

    @abstractmethod
    def restart_arm(self, arm: Arm) -> Arm:
        """Start a stopped arm's container again; the arm as it answers now."""

    @abstractmethod
    def arm_logs(self, arm: Arm, tail: int = 20) -> str: ...

    @abstractmethod
    def remove_arm(self, arm: Arm) -> None:
        """Remove the container once no router worker may still be talking to it."""

    @abstractmethod
    def arm_port(self, arm: Arm) -> int:
        """A 127.0.0.1 port at which this machine reaches the arm's server (tunnelled or
        published), for readiness checks, metrics and the preview's synthetic traffic."""

    def reader(self, arm: Arm) -> ArmReader:
        return ArmReader(self.arm_port(arm))

    def readiness(self, arm: Arm) -> tuple[bool, str]:
        """Whether the arm's server is ready (GET /readyz answers 200), and if not, why."""
        try:
            status, _ = http_get(self.arm_port(arm), "/readyz", timeout=2)
        except MetricsError as exc:
            return False, str(exc)
        return status == 200, f"/readyz answered {status}"

    def synthetic_load(
        self,
        arms: Sequence[Arm] | None,
        rows: Sequence[dict[str, Any]],
        rps: float,
        *,
        id_prefix: str,
    ) -> AbstractContextManager[object]:
        """Synthetic traffic while it is entered: `rows` at `rps` to the router (arms None),
        or to each of `arms` with the same request ids (a like-for-like preview)."""
        if arms is None:
            host, port = self.router_address
            ports = [port]
        else:
            host, ports = "127.0.0.1", [self.arm_port(arm) for arm in arms]
        return LoadGenerator(ports, rows, rps, max_seconds=6 * 3600, id_prefix=id_prefix, host=host)

    @abstractmethod
    def arm_address(self, arm: Arm) -> str:
        """Where the arm answers, for people (host:port or container:port)."""

    # ---------------------------------------------------------------- router

    @abstractmethod
    def route(self, route: Route, generation: int) -> str:
        """Configure the router (start it, or reload it gracefully) and wait until it serves
        `generation`; returns a description of the routes."""

    @abstractmethod
    def router_running(self) -> bool: ...

    # ---------------------------------------------------------------- end

    def close(self) -> None:  # noqa: B027 - most targets hold nothing on this machine
        """Release what the target holds on this machine (tunnels, temporary files)."""

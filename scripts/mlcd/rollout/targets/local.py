"""The local target: release containers on this machine's Docker engine, published on
127.0.0.1, behind an nginx process of mlcd's own on 127.0.0.1:<port>.

The state is `<state dir>/state.json` and the lock an flock on `<state dir>/lock`
(`mlcd.rollout.state`). Container names carry a short id of the state folder
(`mlcd-<project>-<env>-<id>-<version>-<color>`), so two checkouts of one project on one
machine never touch each other's containers. Containers restart with the engine
(`--restart unless-stopped`) on the host port recorded in the state, which the router keeps
pointing at. It is for `mlcd run` on a laptop and for self-hosted runners: on a
GitHub-hosted runner everything it starts is deleted with the job (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

from mlcd.ports import free_port
from mlcd.rollout.router import Backend, RouterSpec, Routing, render
from mlcd.rollout.state import Arm, EnvLock, EnvState, StateStore, process_start, safe_name
from mlcd.rollout.targets.base import (
    CONTAINER_PORT,
    Owner,
    Route,
    Target,
    salted,
    wait_generation,
)
from mlcd.tools import docker
from mlcd.tools.nginx import Nginx


class LocalTarget(Target):
    kind = "local"

    def __init__(
        self, project: str, env: str, port: int, state_dir: Path, routing: Routing | None = None
    ) -> None:
        self.routing = routing or Routing()
        self.project = project
        self.env = env
        self.port = port
        self.state_dir = state_dir
        self.store = StateStore(state_dir, env, project)
        self.lock = EnvLock(state_dir, env)
        self.nginx = Nginx(state_dir / "nginx")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def router_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def describe(self) -> str:
        return f"local target, router 127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- state and lock

    def load_state(self) -> EnvState:
        return self.store.load()

    def save_state(self, state: EnvState) -> None:
        self.store.save(state)

    @property
    def state_location(self) -> str:
        return str(self.store.path)

    def has_state(self) -> bool:
        return self.store.path.is_file()

    def acquire(self, command: str) -> None:
        self.lock.acquire(command)

    def release(self) -> None:
        self.lock.release()

    def holder(self) -> str | None:
        found = self.lock.peek()
        return found.describe() if found else None

    def owner(self) -> Owner:
        me = os.getpid()
        return Owner(me, process_start(me) or "", socket.gethostname())

    # ---------------------------------------------------------------- arms

    @property
    def checkout(self) -> str:
        """A short id of this checkout's environment (its state folder)."""
        return hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:6]

    def container_name(self, version: str, color: str) -> str:
        parts = ("mlcd", self.project, self.env, self.checkout, version, color)
        return "-".join(safe_name(p) for p in parts)

    def start_arm(self, version: str, image: str, color: str) -> Arm:
        name = self.container_name(version, color)
        docker.ensure_image(image)
        docker.remove_container(name)
        container = docker.run_detached(
            image,
            name=name,
            # a fixed host port: after an engine restart the container comes back on it
            ports={CONTAINER_PORT: free_port()},
            env={"MLCD_PORT": str(CONTAINER_PORT), "MLCD_MODEL_VERSION": version},
            labels={
                "mlcd.project": self.project,
                "mlcd.env": self.env,
                "mlcd.checkout": self.checkout,
                "mlcd.version": version,
                "mlcd.color": color,
            },
            extra=["--restart", "unless-stopped"],
        )
        return Arm(
            version=version,
            image=image,
            container=name,
            port=container.ports[CONTAINER_PORT],
            color=color,
        )

    def arm_state(self, arm: Arm) -> dict[str, object] | None:
        return docker.state(arm.container)

    def restart_arm(self, arm: Arm) -> Arm:
        docker.start(arm.container)
        arm.port = docker.host_port(arm.container, CONTAINER_PORT)
        return arm

    def arm_logs(self, arm: Arm, tail: int = 20) -> str:
        return docker.logs(arm.container, tail=tail)

    def remove_arm(self, arm: Arm) -> None:
        self.nginx.wait_drained()
        docker.remove_container(arm.container)

    def arm_port(self, arm: Arm) -> int:
        return arm.port

    def arm_address(self, arm: Arm) -> str:
        return f"127.0.0.1:{arm.port}"

    # ---------------------------------------------------------------- router

    def route(self, route: Route, generation: int) -> str:
        spec = RouterSpec(
            port=self.port,
            mode=route.mode,
            primary=tuple(Backend(arm.port, weight) for arm, weight in route.primary),
            shadow=Backend(route.shadow.port) if route.shadow else None,
            generation=generation,
            labels={"env": self.env, "project": self.project},
            routing=salted(self.routing, route),
        )
        self.nginx.apply(render(spec, self.nginx.prefix))
        wait_generation(
            "127.0.0.1",
            self.port,
            generation,
            where=f"127.0.0.1:{self.port}",
            hint=f"see {self.nginx.error_log}",
        )
        return spec.describe()

    def router_running(self) -> bool:
        return self.nginx.running()

    # ---------------------------------------------------------------- removal

    def down(self) -> list[str]:
        """This checkout's containers of the environment (by their labels), the router's
        nginx processes, and the state folder (state, router files, lock)."""
        removed: list[str] = []
        labels = {
            "mlcd.project": self.project,
            "mlcd.env": self.env,
            "mlcd.checkout": self.checkout,
        }
        for name in docker.containers(labels):
            docker.remove_container(name)
            removed.append(f"container {name}")
        if self.nginx.master_pid() is not None or self.nginx._front_instance().master_pid():
            self.nginx.stop()
            removed.append(f"router (nginx) on 127.0.0.1:{self.port}")
        if self.state_dir.is_dir():
            # the lock file alone is what taking the lock for this command created
            kept = [p.name for p in self.state_dir.iterdir() if p.name != "lock"]
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if kept:
                removed.append(f"state folder {self.state_dir} ({', '.join(sorted(kept))})")
        return removed

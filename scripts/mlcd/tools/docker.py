"""The docker adapter: containers of released images, published on 127.0.0.1 only."""

from __future__ import annotations

import json
from collections.abc import Mapping

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools.base import ToolResult, find_program, run

INSTALL_HINT = "install Docker: sudo bash scripts/setup/apt.sh && sudo bash scripts/setup/docker.sh"
DAEMON_HINT = "start the Docker engine: sudo bash scripts/setup/docker.sh (then `docker info`)"


def _docker(args: list[str], *, timeout: float = 120) -> ToolResult:
    docker = find_program("docker", hint=INSTALL_HINT)
    result = run([docker, *args], timeout=timeout)
    text = result.stderr
    if result.returncode != 0 and (
        "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text
    ):
        raise EnvironmentMissing("the Docker engine is not reachable", hint=DAEMON_HINT)
    return result


def _fail(what: str, result: ToolResult) -> EnvironmentMissing:
    return EnvironmentMissing(
        f"docker {what} failed: {(result.stderr or result.stdout).strip()[-500:]}",
        hint="check `docker info` and the message above",
    )


def image_present(image: str) -> bool:
    return _docker(["image", "inspect", "--format", "{{.Id}}", image]).returncode == 0


def ensure_image(image: str) -> None:
    """Make sure an image is on the engine, pulling it (e.g. from the local registry) if not."""
    if image_present(image):
        return
    result = _docker(["pull", "--quiet", image], timeout=600)
    if result.returncode != 0:
        raise UserInputError(
            f"the release's image {image} is neither on the Docker engine nor pullable: "
            f"{result.stderr.strip()[-300:]}",
            hint="is the registry running (scripts/setup/registry.sh) and the release pushed?",
        )


def run_container(
    name: str,
    image: str,
    *,
    container_port: int,
    env: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    """Start a detached container, its port published on a free port of 127.0.0.1."""
    argv = [
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1::{container_port}",
        "--restart",
        "no",
    ]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    result = _docker([*argv, image], timeout=120)
    if result.returncode != 0:
        raise _fail(f"run {name}", result)


def host_port(name: str, container_port: int) -> int:
    result = _docker(["port", name, f"{container_port}/tcp"])
    if result.returncode != 0:
        raise _fail(f"port {name}", result)
    for line in result.stdout.splitlines():
        host, _, port = line.strip().rpartition(":")
        if host == "127.0.0.1" and port.isdigit():  # run_container publishes on 127.0.0.1
            return int(port)
    raise EnvironmentMissing(f"container {name} publishes no port for {container_port}")


def state(name: str) -> dict[str, object] | None:
    """The container's State (Running, ExitCode, …), None when there is no such container."""
    result = _docker(["inspect", "--type", "container", "--format", "{{json .State}}", name])
    if result.returncode != 0:
        return None
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def running(name: str) -> bool:
    info = state(name)
    return bool(info and info.get("Running"))


def logs(name: str, tail: int = 20) -> str:
    result = _docker(["logs", "--tail", str(tail), name])
    return (result.stdout + result.stderr).strip()


def start(name: str) -> None:
    result = _docker(["start", name])
    if result.returncode != 0:
        raise _fail(f"start {name}", result)


def remove(name: str) -> None:
    """Remove a container (stopping it first); absent containers are fine."""
    result = _docker(["rm", "--force", name], timeout=60)
    if result.returncode != 0 and "No such container" not in result.stderr:
        raise _fail(f"rm {name}", result)


def containers(labels: Mapping[str, str]) -> list[str]:
    """Names of the containers (running or not) carrying all these labels."""
    argv = ["ps", "--all", "--format", "{{.Names}}"]
    for key, value in sorted(labels.items()):
        argv += ["--filter", f"label={key}={value}"]
    result = _docker(argv)
    if result.returncode != 0:
        raise _fail("ps", result)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]

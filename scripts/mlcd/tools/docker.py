"""The Docker adapter: images (build, inspect, tag, push, pull, save, remove) and containers
(run detached with published ports, inspect, health, logs, stop, kill, remove).

Every call goes through `tools.base.run`. A missing client or an engine that does not
answer is exit 3 with how to start it; a failing command raises `DockerError` (exit 3 as
well: the environment did not do what was asked) carrying Docker's own message. A build
that fails because of what the Dockerfile says (a parse error, a step that fails, a file it
copies that is not there) is the user's input: exit 2, naming the Dockerfile.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools.base import ToolResult, find_program, run, spawn

INSTALL_HINT = "install Docker: sudo bash scripts/setup/apt.sh (Debian package docker.io)"
START_HINT = (
    "start the Docker engine: sudo bash scripts/setup/docker.sh (or `make setup`); "
    "elsewhere: sudo systemctl start docker"
)
_NOT_RUNNING = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "docker.sock: connect",
    "permission denied while trying to connect",
)
_SSH_FAILURES = {
    "host key verification failed": "the server's host key is not the one in known-hosts "
    "(environments.<env>.known-hosts or MLCD_DEPLOY_KNOWN_HOSTS); check it with "
    "`ssh-keyscan` from a trusted network and update it, never skip the check",
    "permission denied": "the server refused the SSH key: add its public key to the deploy "
    "user's authorized_keys, and give mlcd the private key (MLCD_DEPLOY_SSH_KEY, "
    "environments.<env>.key-file or an ssh-agent)",
    "could not resolve hostname": "the host name in environments.<env>.host does not resolve",
    "connection refused": "nothing listens for SSH at environments.<env>.host",
    "timed out": "the server does not answer on its SSH port (address, firewall)",
    "no route to host": "the server cannot be reached (address, network)",
    "docker: command not found": "Docker is not installed on the server (or not on the SSH "
    "user's PATH)",
}
# what `docker build` (the classic builder) prints when the Dockerfile itself is wrong
_DOCKERFILE_FAULTS = (
    "dockerfile parse error",
    "unknown instruction",
    "returned a non-zero code",
    "copy failed",
    "add failed",
    "failed to process",
    "no build stage in current context",
    "unknown flag",
    "when using copy with more than one source",
)
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


class DockerError(EnvironmentMissing):
    """A docker command failed; the message carries Docker's own words."""


@dataclass(frozen=True)
class BuildOutput:
    image_id: str  # sha256:… (the image's config digest)
    log: str
    seconds_cached_steps: int = 0
    steps: int = 0


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port


def _docker() -> str:
    return find_program("docker", hint=INSTALL_HINT)


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(
            (
                "DEPRECATED",
                "BuildKit is",
                "environment-variable",
                "Install the buildx",
                "https://docs.docker.com",
            )
        )
    ]
    return (useful or lines or ["no message"])[-1][:500]


def call(
    args: Sequence[str],
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    what: str | None = None,
    input_text: str | None = None,
) -> ToolResult:
    """`docker ARGS…`; exit 3 when the engine is unreachable, DockerError on failure.

    `env` may point the client at another engine (DOCKER_HOST=ssh://…, `mlcd.tools.ssh`).
    """
    result = run([_docker(), *args], timeout=timeout, env=env, input_text=input_text)
    if result.returncode != 0:
        lowered = result.stderr.lower()
        remote = (env or {}).get("DOCKER_HOST", "")
        if remote.startswith("ssh://"):
            for marker, hint in _SSH_FAILURES.items():
                if marker in lowered and "error response from daemon" not in lowered:
                    raise EnvironmentMissing(
                        f"cannot reach the Docker engine on {remote} over SSH "
                        f"({_first_error(result.stderr)})",
                        hint=hint,
                    )
        if any(marker in lowered for marker in _NOT_RUNNING):
            raise EnvironmentMissing(
                f"the Docker engine does not answer ({_first_error(result.stderr)})",
                hint=START_HINT,
            )
        if check:
            raise DockerError(
                f"`docker {what or ' '.join(args[:2])}` failed: {_first_error(result.stderr)}"
            )
    return result


def attached(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> Any:
    """`docker ARGS…` left running with its stdin held by this process (a `Popen`).

    With `docker run -i --rm`, the container lives exactly as long as this process holds the
    pipe: when it dies (even by SIGKILL) or its SSH connection drops, the container's stdin
    closes and the container is removed. `DockerHostTarget` takes its lock this way.
    """
    return spawn([_docker(), *args], env=env, stdin_pipe=True, stdout_pipe=True)


def ping() -> str:
    """The engine's version, or exit 3 saying how to start it."""
    result = call(["version", "--format", "{{.Server.Version}}"], timeout=30, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise EnvironmentMissing(
            f"the Docker engine does not answer ({_first_error(result.stderr)})", hint=START_HINT
        )
    return result.stdout.strip()


# ------------------------------------------------------------------------ images


def build(
    context: Path,
    *,
    dockerfile: Path,
    tags: Sequence[str] = (),
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    network: str | None = "none",
    timeout: float = 1800,
    shown_as: str | None = None,
) -> BuildOutput:
    """`docker build` with the classic builder (works with and without buildx). `shown_as`
    names the Dockerfile in errors (the user's file, when `dockerfile` is a copy of it)."""
    with tempfile.TemporaryDirectory(prefix="mlcd-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        args = ["build", "--file", str(dockerfile), "--iidfile", str(iidfile)]
        if network:
            args += ["--network", network]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        for tag in tags:
            args += ["--tag", tag]
        args.append(str(context))
        result = call(args, timeout=timeout, env={"DOCKER_BUILDKIT": "0"}, check=False)
        if result.returncode != 0 or not iidfile.is_file():
            shown = Path(shown_as) if shown_as else dockerfile
            raise build_failure(shown, result.stdout, result.stderr)
        image_id = iidfile.read_text("utf-8").strip()
    steps = len(re.findall(r"^Step \d+/\d+", result.stdout, re.MULTILINE))
    cached = result.stdout.count("Using cache")
    return BuildOutput(image_id, result.stdout, cached, steps)


def build_failure(
    dockerfile: Path, stdout: str, stderr: str
) -> EnvironmentMissing | UserInputError:
    """The error of a failed `docker build`: exit 2 when the Dockerfile is at fault (what it
    says cannot be built), else exit 3 (the engine, the disk, a missing base image)."""
    first = _first_error(stderr or stdout)
    tail = "\n".join(stdout.splitlines()[-15:])
    problems = [tail] if tail else []
    lowered = f"{stderr}\n{stdout}".lower()
    if any(marker in lowered for marker in _DOCKERFILE_FAULTS):
        return UserInputError(
            f"docker build failed: {dockerfile}: {first}",
            hint="fix the Dockerfile (the failing step is the last one in the output above)",
            problems=problems,
        )
    return DockerError(f"docker build failed: {first}", problems=problems)


def inspect_image(ref: str) -> dict[str, Any] | None:
    """`docker image inspect` as a dict, or None when there is no such image."""
    return _inspect("image", ref)


def image_exists(ref: str) -> bool:
    return inspect_image(ref) is not None


def tag(source: str, target: str) -> None:
    call(["tag", source, target], timeout=60)


def push(ref: str, *, timeout: float = 1200) -> str:
    """Push a tag; returns the registry's manifest digest (sha256:…)."""
    result = call(["push", ref], timeout=timeout, check=False)
    if result.returncode != 0:
        message = _first_error(result.stderr or result.stdout)
        raise EnvironmentMissing(
            f"docker push {ref} failed: {message}",
            hint="start the local registry: sudo bash scripts/setup/registry.sh (127.0.0.1:5000), "
            "or log in to the configured registry",
        )
    found: list[str] = _DIGEST.findall(result.stdout)
    if not found:
        raise DockerError(f"docker push {ref} printed no digest")
    return found[-1]


def pull(ref: str, *, timeout: float = 1200) -> None:
    result = call(["pull", ref], timeout=timeout, check=False)
    if result.returncode != 0:
        raise EnvironmentMissing(
            f"docker pull {ref} failed: {_first_error(result.stderr or result.stdout)}",
            hint="check that the registry runs (sudo bash scripts/setup/registry.sh) and "
            "holds the image",
        )


def save(ref: str, path: Path, *, timeout: float = 600) -> Path:
    call(["save", "--output", str(path), ref], timeout=timeout)
    return path


def remove_image(ref: str, *, force: bool = False) -> bool:
    args = ["image", "rm", *(["--force"] if force else []), ref]
    return call(args, timeout=120, check=False).returncode == 0


# -------------------------------------------------------------------- containers


def run_detached(
    image: str,
    *,
    name: str,
    ports: Mapping[int, int] | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    network: str | None = None,
    extra: Sequence[str] = (),
    command: Sequence[str] = (),
    bind: str = "127.0.0.1",
) -> Container:
    """`docker run -d`; ports map container port -> host port (0: a free one) on `bind`."""
    args = ["run", "--detach", "--name", name]
    for container_port, wanted in (ports or {}).items():
        host = f"{bind}:{wanted}:" if wanted else f"{bind}::"
        args += ["--publish", f"{host}{container_port}"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    if network:
        args += ["--network", network]
    args += [*extra, image, *command]
    result = call(args, timeout=120, what=f"run {image}")
    container_id = result.stdout.strip().splitlines()[-1]
    published = {p: host_port(container_id, p) for p in (ports or {})}
    return Container(container_id, name, published)


def host_port(container: str, port: int) -> int:
    """The host port that a container port is published on."""
    result = call(["port", container, f"{port}/tcp"], timeout=30)
    for line in result.stdout.splitlines():
        tail = line.rsplit(":", 1)[-1].strip()
        if tail.isdigit():
            return int(tail)
    raise DockerError(f"container {container[:12]} publishes no port for {port}")


def inspect_container(ref: str) -> dict[str, Any] | None:
    """`docker container inspect` as a dict, or None when there is no such container."""
    return _inspect("container", ref)


def _inspect(kind: Literal["image", "container"], ref: str) -> dict[str, Any] | None:
    result = call([kind, "inspect", ref], timeout=60, check=False)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    return data[0] if data else None


def health(ref: str) -> str:
    """`starting`, `healthy`, `unhealthy`, `none` (no HEALTHCHECK) or `exited`/`missing`."""
    data = inspect_container(ref)
    if data is None:
        return "missing"
    state = data.get("State") or {}
    if not state.get("Running"):
        return "exited"
    return str((state.get("Health") or {}).get("Status") or "none")


def logs(ref: str, *, tail: int | None = 200) -> str:
    args = ["logs", *(["--tail", str(tail)] if tail else []), ref]
    result = call(args, timeout=60, check=False)
    return result.stdout + result.stderr


def stop(ref: str, *, timeout_s: int = 10) -> None:
    call(["stop", "--time", str(timeout_s), ref], timeout=timeout_s + 60, check=False)


def kill(ref: str, *, signal_name: str = "TERM") -> None:
    call(["kill", "--signal", signal_name, ref], timeout=60, check=False)


def wait(ref: str, *, timeout: float = 120) -> int:
    result = call(["wait", ref], timeout=timeout, check=False)
    out = result.stdout.strip()
    return int(out) if out.lstrip("-").isdigit() else -1


def remove_container(ref: str, *, force: bool = True) -> None:
    call(["rm", *(["--force"] if force else []), ref], timeout=120, check=False)


# -------------------------------------------------------------- rollout helpers (deploy)


def ensure_image(image: str) -> None:
    """Make sure an image is on the engine, pulling it (e.g. from the local registry) if not."""
    if image_exists(image):
        return
    result = call(["pull", "--quiet", image], timeout=1200, check=False)
    if result.returncode != 0:
        raise UserInputError(
            f"the release's image {image} is neither on the Docker engine nor pullable: "
            f"{_first_error(result.stderr)}",
            hint="is the registry running (scripts/setup/registry.sh) and the release pushed?",
        )


def state(ref: str) -> dict[str, Any] | None:
    """A container's State (Running, ExitCode, …); None when there is no such container."""
    data = inspect_container(ref)
    if data is None:
        return None
    found = data.get("State")
    return found if isinstance(found, dict) else None


def running(ref: str) -> bool:
    found = state(ref)
    return bool(found and found.get("Running"))


def start(ref: str) -> None:
    call(["start", ref], timeout=120, what=f"start {ref}")


def containers(labels: Mapping[str, str]) -> list[str]:
    """Names of the containers (running or not) carrying all these labels."""
    args = ["ps", "--all", "--format", "{{.Names}}"]
    for key, value in sorted(labels.items()):
        args += ["--filter", f"label={key}={value}"]
    result = call(args, timeout=60)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


first_error = _first_error

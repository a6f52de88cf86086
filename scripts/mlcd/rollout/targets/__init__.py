"""Deploy targets: the one factory that opens an environment's target (`open_target`).

Like Argo Rollouts' one reconciler per traffic router, an environment's kind picks who does
the work, here and only here: the container engines (`local`, `docker-host`, `swarm`) are a
`base.Target` driven by the shared controller (`mlcd.rollout.controller`); `kubernetes` is an
`ArgoDeployer` (Argo Rollouts moves the traffic). `open_target` takes the resolved
`mlcd.environment.Environment` and one constructor for each, so that its caller never asks
which kind it has. The credentials of a docker-host come from the config's files or from the
workflow's secrets in environment variables, and go into a private temporary folder of
`mlcd.tools.ssh`, never into the run folder.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlcd.config import EnvironmentSection, LoadedConfig
from mlcd.environment import Environment
from mlcd.errors import UserInputError
from mlcd.rollout.router import Routing
from mlcd.rollout.targets.base import Target
from mlcd.rollout.targets.dockerhost import DockerHostTarget
from mlcd.rollout.targets.kubernetes import ArgoDeployer
from mlcd.rollout.targets.local import LocalTarget
from mlcd.rollout.targets.swarm import SwarmTarget
from mlcd.tools.ssh import SshTransport, parse_url

SSH_KEY_ENV = "MLCD_DEPLOY_SSH_KEY"
KNOWN_HOSTS_ENV = "MLCD_DEPLOY_KNOWN_HOSTS"
KUBECONFIG_ENV = "MLCD_KUBECONFIG"


def _read(root: Path, relative: str, what: str, env: str) -> Path:
    path = (root / relative).expanduser().resolve()
    if not path.is_file():
        raise UserInputError(
            f"environments.{env}: the {what} file {path} does not exist",
            hint=f"fix environments.{env} in the config, or drop the key and use the "
            "workflow secret instead",
        )
    return path


def transport_for(env: str, section: EnvironmentSection, root: Path) -> SshTransport:
    """The SSH transport of a docker-host environment, its host key always checked."""
    target = parse_url(section.host or "", where=f"environments.{env}.host")
    if section.known_hosts:
        known = _read(root, section.known_hosts, "known-hosts", env).read_text("utf-8")
    else:
        known = os.environ.get(KNOWN_HOSTS_ENV, "")
    if not known.strip():
        raise UserInputError(
            f"environments.{env}: no host key for {target.url}; mlcd never skips the host key "
            "check",
            hint=f"set environments.{env}.known-hosts to a known_hosts file, or the "
            f"{KNOWN_HOSTS_ENV} variable (the workflow's deploy-known-hosts secret) to its "
            f"content; on a trusted network: ssh-keyscan -p {target.port} {target.address}",
        )
    key_file = _read(root, section.key_file, "key-file", env) if section.key_file else None
    key_text = None if key_file else os.environ.get(SSH_KEY_ENV) or None
    return SshTransport(target, known_hosts=known, key_file=key_file, key_text=key_text)


def engine_target(environment: Environment) -> Target:
    """The target of an environment of containers behind a router (local, docker-host or
    swarm)."""
    section = environment.section
    routing = Routing(section.routing.header, section.routing.sticky_key)
    if environment.kind == "docker-host":
        transport = transport_for(environment.name, section, environment.root)
        return DockerHostTarget(
            environment.project,
            environment.name,
            environment.port,
            transport,
            section.router.image,
            routing=routing,
        )
    if environment.kind == "swarm":
        transport = transport_for(environment.name, section, environment.root)
        return SwarmTarget(
            environment.project,
            environment.name,
            environment.port,
            transport,
            section.router.image,
            swarm=section.swarm,
            routing=routing,
        )
    if environment.kind != "local":
        raise ValueError(f"{environment.kind} is not a container target")
    return LocalTarget(
        environment.project,
        environment.name,
        environment.port,
        environment.state_dir,
        routing=routing,
    )


D = TypeVar("D")


def open_target(
    environment: Environment,
    *,
    loaded: LoadedConfig,
    progress: Callable[[str], None],
    engines: Callable[[Callable[[], Target]], D],
    argo: Callable[[ArgoDeployer], D],
) -> D:
    """The environment's target, handed to the constructor of its kind: `engines` gets how
    to open the container target (local, docker-host, swarm; opened under the command's lock, once
    per attempt) for the shared controller, `argo` the Argo Rollouts deployer (kubernetes)."""
    if environment.kind == "kubernetes":
        return argo(ArgoDeployer(environment, loaded, progress))
    return engines(functools.partial(engine_target, environment))


def refuse_ephemeral(environment: Environment) -> None:
    """A `local` target on a GitHub-hosted runner serves nothing once the job ends."""
    env = environment.name
    if environment.kind == "local" and os.environ.get("RUNNER_ENVIRONMENT") == "github-hosted":
        raise UserInputError(
            f"environments.{env} has target `local`, and this is a GitHub-hosted runner: "
            "everything it would start (containers, router, state) is deleted when the job "
            "ends, and the release would be recorded as live although nothing serves it",
            hint=f"give {env} `target: docker-host` with `host: ssh://user@server` (and the "
            "deploy-ssh-key / deploy-known-hosts secrets) or `target: kubernetes`; `local` is "
            "for `mlcd run` and self-hosted runners (docs/deploy.md)",
        )


__all__ = [
    "KUBECONFIG_ENV",
    "ArgoDeployer",
    "Target",
    "engine_target",
    "open_target",
    "refuse_ephemeral",
    "transport_for",
]

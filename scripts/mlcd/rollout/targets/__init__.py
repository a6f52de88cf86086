"""Deploy targets behind one interface (`base.Target`): local, docker-host, kubernetes.

`engine_target` opens the target of an environment that runs containers behind a router
(local or docker-host); the credentials of a docker-host come from the config's files or
from the workflow's secrets in environment variables, and go into a private temporary
folder of `mlcd.tools.ssh`, never into the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlcd.config import EnvironmentSection
from mlcd.errors import UserInputError
from mlcd.rollout.router import Routing
from mlcd.rollout.targets.base import Target
from mlcd.rollout.targets.dockerhost import DockerHostTarget
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


def engine_target(
    project: str,
    env: str,
    section: EnvironmentSection,
    *,
    port: int,
    state_dir: Path,
    root: Path,
) -> Target:
    """The target of an environment of containers behind a router (local or docker-host)."""
    routing = Routing(section.routing.header, section.routing.sticky_key)
    if section.target == "docker-host":
        transport = transport_for(env, section, root)
        return DockerHostTarget(
            project, env, port, transport, section.router.image, routing=routing
        )
    if section.target == "swarm":
        transport = transport_for(env, section, root)
        return SwarmTarget(
            project,
            env,
            port,
            transport,
            section.router.image,
            swarm=section.swarm,
            routing=routing,
        )
    if section.target != "local":
        raise ValueError(f"{section.target} is not a container target")
    return LocalTarget(project, env, port, state_dir, routing=routing)


__all__ = ["KUBECONFIG_ENV", "Target", "engine_target", "transport_for"]

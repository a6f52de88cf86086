"""An environment's facts, resolved once per command: `Environment`.

Built by `resolve` from the loaded config, the environment's name and the process
environment, by `Context.environment` only (once per name and command; checked by
tests/unit/test_architecture.py), then passed down: the stages, the target factory
(`mlcd.rollout.targets.open_target`) and the recorders read it and never re-derive it.

- `section`: the environment's `environments.<name>` section;
- `port`: the router's port: `MLCD_<NAME>_PORT`, else `port:`, else the config's default
  table (`mlcd.config.default_router_port`: staging 8081, production 8082, 8083, …);
- `state_dir`: where a local target keeps state and lock: `$MLCD_STATE_DIR/<name>`, else
  `<project>/.mlcd-state/<name>`;
- `holds_champion`: whether a release live here is the champion
  (`registry.champion-environment`, default `production`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlcd import stagenames
from mlcd.config import EnvironmentSection, LoadedConfig, default_router_port
from mlcd.errors import UserInputError

STATE_ENV = "MLCD_STATE_DIR"


@dataclass(frozen=True)
class Environment:
    """One environment of one command, resolved."""

    name: str
    project: str
    section: EnvironmentSection
    root: Path  # the project folder (the config's): relative key and known-hosts files
    port: int
    state_dir: Path
    holds_champion: bool

    @property
    def kind(self) -> str:
        """The target's kind: local, docker-host, swarm or kubernetes."""
        return self.section.target

    def stage(self, verb: str) -> str:
        """The result folder of `verb` on this environment (`deploy-staging`)."""
        return stagenames.of(verb, self.name)

    def refused(self, verb: str) -> str:
        return stagenames.refused(self.stage(verb))


def port_variable(env: str) -> str:
    return "MLCD_" + re.sub(r"[^A-Z0-9]", "_", env.upper()) + "_PORT"


def resolve(
    loaded: LoadedConfig, name: str, environ: Mapping[str, str] | None = None
) -> Environment:
    """The environment `name` of the loaded config (exit 2 naming the file when it has no
    such environment, or when MLCD_<NAME>_PORT is not a port)."""
    environ = os.environ if environ is None else environ
    envs = loaded.config.environments
    if name not in envs:
        known = ", ".join(envs) or "none (add an `environments:` section)"
        raise UserInputError(
            f"{loaded.path}: no environment `{name}` in the config",
            hint=f"environments there: {known}",
        )
    section = envs[name]
    base = environ.get(STATE_ENV)
    state_root = Path(base) if base else loaded.root / ".mlcd-state"
    return Environment(
        name=name,
        project=loaded.config.project,
        section=section,
        root=loaded.root,
        port=_router_port(name, section, list(envs), environ),
        state_dir=state_root.resolve() / name,
        holds_champion=name == loaded.config.registry.champion_environment,
    )


def _router_port(
    name: str, section: EnvironmentSection, names: list[str], environ: Mapping[str, str]
) -> int:
    variable = port_variable(name)
    raw = environ.get(variable)
    if raw:
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise UserInputError(f"{variable}={raw} is not a TCP port number (1-65535)")
        return int(raw)
    if section.port is not None:
        return section.port
    return default_router_port(name, names)


def ordered(loaded: LoadedConfig) -> list[str]:
    """Environments with each after the ones it requires (config order otherwise)."""
    envs = loaded.config.environments
    done: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in done or name in trail:
            return
        for needed in envs[name].requires:
            visit(needed, (*trail, name))
        done.append(name)

    for name in envs:
        visit(name, ())
    return done

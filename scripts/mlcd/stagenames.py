"""The names of the stages that act on an environment, made and read here only.

A command that acts on environment ENV records its result as `<verb>-<ENV>` (`deploy-staging`,
`rollback-production`, `down-staging`); one refused before anything moved records
`<verb>-<ENV>-refused` beside it. Everything that builds or parses such a name (the run
folder, the run page, the pipeline, the GitHub publisher) goes through these functions;
tests/unit/test_architecture.py checks that no other module parses them.
"""

from __future__ import annotations

from dataclasses import dataclass

# the commands that act on an environment, in the order a run page lists them
ENV_VERBS = ("deploy", "rollback", "promote", "abort", "down")
DEPLOY = "deploy"
REFUSED_SUFFIX = "-refused"


@dataclass(frozen=True)
class EnvStage:
    """A parsed environment stage name."""

    verb: str
    env: str
    refused: bool = False

    @property
    def name(self) -> str:
        return of(self.verb, self.env) + (REFUSED_SUFFIX if self.refused else "")


def of(verb: str, env: str) -> str:
    """`deploy` and `staging` → `deploy-staging`."""
    return f"{verb}-{env}"


def deploy(env: str) -> str:
    return of(DEPLOY, env)


def refused(stage: str) -> str:
    """Where a command refused before it acted records its refusal."""
    return stage + REFUSED_SUFFIX


def parse(stage: str) -> EnvStage | None:
    """`deploy-staging` → EnvStage("deploy", "staging"); None for another stage (`train`)."""
    verb, sep, env = stage.partition("-")
    if not sep or verb not in ENV_VERBS or not env:
        return None
    if env.endswith(REFUSED_SUFFIX) and len(env) > len(REFUSED_SUFFIX):
        return EnvStage(verb, env.removesuffix(REFUSED_SUFFIX), refused=True)
    return EnvStage(verb, env)


def deploy_env(stage: str) -> str | None:
    """The environment of a deploy's own result (`deploy-staging` → `staging`); None for
    any other stage, a refusal included."""
    found = parse(stage)
    return found.env if found and found.verb == DEPLOY and not found.refused else None


def is_deploy(stage: str) -> bool:
    """A deploy's result or its refusal (`deploy-staging`, `deploy-staging-refused`)."""
    found = parse(stage)
    return found is not None and found.verb == DEPLOY


def command(stage: str) -> str:
    """The `mlcd` command that writes a stage's result (`deploy-staging` → `deploy`)."""
    found = parse(stage)
    return found.verb if found is not None else stage


def deploy_label(stage: str) -> str:
    """What a run page shows for a deploy's row: the environment, with `-refused` for a
    refusal (`deploy-staging-refused` → `staging-refused`)."""
    return stage.removeprefix(f"{DEPLOY}-")


DEPLOY_GLOB = f"{DEPLOY}-*"  # the run folder's deploy results (filter with `deploy_env`)

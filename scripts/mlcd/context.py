"""What every command gets: the loaded config, the evidence bundle, and the output mode.

A command is declared once (`Command`): its name, its help with an example, its arguments
and the function that runs it. `cli.py` only lists the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, TextIO

from mlcd import stagenames
from mlcd.config import Config, LoadedConfig, load_config, on_local_target
from mlcd.environment import Environment, resolve
from mlcd.evidence import Bundle, StageOutcome, StageResult, run_stage, status_icon
from mlcd.projectfiles import Exclusions, exclusions
from mlcd.tools.git import head_sha, toplevel

OutputFormat = Literal["text", "json"]


# stages that write the local model registry; every `<verb>-<env>` stage
# (mlcd.stagenames.ENV_VERBS) writes an environment's state and records in the registry
_WRITES_REGISTRY = frozenset({"evaluate", "release"})


def _no_progress(_message: str) -> None:
    return None


@dataclass
class Context:
    """The options common to every command, and lazy access to the config."""

    config_path: Path
    out: Path
    fmt: OutputFormat = "text"
    verbose: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    progress: Callable[[str], None] = _no_progress
    in_pipeline: bool = False
    # `mlcd run --target local`: every environment on this machine's engine
    local_targets: bool = False
    _environments: dict[str, Environment] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def loaded(self) -> LoadedConfig:
        loaded = load_config(self.config_path)
        return on_local_target(loaded) if self.local_targets else loaded

    @property
    def config(self) -> Config:
        return self.loaded.config

    def reload(self) -> None:
        """Load the config again on the next use (`mlcd run --target local`), and with it
        every environment resolved from it."""
        self.__dict__.pop("loaded", None)
        self._environments.clear()

    def environment(self, name: str) -> Environment:
        """The environment `name`, resolved once per command (mlcd.environment) from the
        loaded config and the process environment, then the same object every time."""
        found = self._environments.get(name)
        if found is None:
            found = self._environments[name] = resolve(self.loaded, name)
        return found

    @cached_property
    def bundle(self) -> Bundle:
        return Bundle(self.out)

    @cached_property
    def exclusions(self) -> Exclusions:
        """What lint, test, scan and coverage leave out: mlcd's own checkout, the run,
        registry and state folders, virtualenvs (mlcd.projectfiles)."""
        return exclusions(self.loaded, self.out, toplevel(self.loaded.root))

    @cached_property
    def inputs(self) -> dict[str, str]:
        return {"config_sha256": self.loaded.sha256, "git_sha": head_sha(self.loaded.root)}

    def run_stage(self, stage: str, body: Callable[[], StageOutcome]) -> StageResult:
        """Run one stage body and record it in the bundle (see `evidence.run_stage`).

        Nothing runs unless the run folder, and the other folders the stage writes (the
        local model registry, the environment's state), take a file (exit 3 naming it)."""
        return run_stage(
            self.bundle, stage, body, inputs=self.inputs, writable=self.writable_for(stage)
        )

    def writable_for(self, stage: str) -> list[tuple[Path, str, str]]:
        """The folders besides the run folder that `stage` writes (folder, what, hint)."""
        from mlcd.evidence import STATE_HINT, WRITE_HINT

        folders: list[tuple[Path, str, str]] = []
        acting = stagenames.parse(stage)
        registry = self.config.registry
        records = acting is not None and acting.verb != "down"  # down leaves the registry
        if registry.backend == "local" and (stage in _WRITES_REGISTRY or records):
            from mlcd.registry import local_path

            folders.append((local_path(self.loaded), "the model registry", WRITE_HINT))
        if acting is not None and not acting.refused and acting.env in self.config.environments:
            state = self.environment(acting.env).state_dir
            folders.append((state, f"the state folder of {acting.env}", STATE_HINT))
        return folders

    def say(self, text: str) -> None:
        """A line for people (text mode only; json mode prints only the result)."""
        if self.fmt == "text" and not self.in_pipeline:
            print(text, file=self.stream)

    def conclude(self, result: StageResult) -> int:
        """Print a finished stage's result and return its exit code (1 when its gate said no)."""
        self.emit(result)
        return 1 if result.status == "fail" else 0

    def emit(self, result: StageResult) -> None:
        """Print a finished stage's result: its summary in text mode, result.json in json."""
        if self.in_pipeline:
            return
        if self.fmt == "json":
            print(json.dumps(result.to_json(), indent=2, sort_keys=True), file=self.stream)
            return
        print(f"{status_icon(result.status)} {result.stage}: {result.summary}", file=self.stream)
        for reason in result.reasons[:15]:
            print(f"  - {reason}", file=self.stream)
        if len(result.reasons) > 15:
            print(
                f"  … {len(result.reasons) - 15} more in {self.out / result.stage}",
                file=self.stream,
            )


@dataclass(frozen=True)
class Command:
    """One CLI command."""

    name: str
    help: str
    description: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], int]


def no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None

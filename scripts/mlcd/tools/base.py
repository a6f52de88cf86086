"""Running external programs: the one place where mlcd starts a subprocess."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlcd.errors import EnvironmentMissing


@dataclass(frozen=True)
class ToolResult:
    """What a program did: its exit code and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def find_program(name: str, *, hint: str) -> str:
    """The full path of a program on PATH, or exit 3 with how to install it."""
    found = shutil.which(name)
    if found is None:
        raise EnvironmentMissing(f"`{name}` is not installed or not on PATH", hint=hint)
    return found


def python_module_argv(module: str, *, package: str | None = None) -> list[str]:
    """`python -m MODULE` in the interpreter that runs mlcd, or exit 3 if it is missing."""
    if importlib.util.find_spec(module) is None:
        raise EnvironmentMissing(
            f"the Python package `{package or module}` is not installed in {sys.prefix}",
            hint=f"pip install {package or module}  (or reinstall mlcd: pip install .)",
        )
    return [sys.executable, "-m", module]


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 3600,
    input_text: str | None = None,
) -> ToolResult:
    """Run a program to completion and capture its output (never raises on a non-zero exit)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EnvironmentMissing(
            f"cannot start `{argv[0]}`: {exc.strerror}", hint="install it and retry"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentMissing(
            f"`{' '.join(argv[:3])} …` did not finish within {timeout} s",
            hint="check that the program is not waiting for input or a network",
        ) from exc
    return ToolResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin_pipe: bool = False,
    stdout_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-running program (a tunnel, an attached lock) and return it running.

    Its stdout is discarded (or piped, with `stdout_pipe`) and its stderr kept for the
    caller's error message. With
    `stdin_pipe`, the caller holds the program's stdin: when the caller dies, even by
    SIGKILL, the pipe closes and the program sees end of file.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        return subprocess.Popen(  # nosec B603
            list(argv),
            env=full_env,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise EnvironmentMissing(
            f"cannot start `{argv[0]}`: {exc.strerror}", hint="install it and retry"
        ) from exc

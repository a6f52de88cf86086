"""`mlcd --help` (and each command's --help) loads none of the numeric libraries: they are
imported when a stage runs, so the CLI answers at once and `mlcd report`/`status` need no
NumPy. Measured as `python -X importtime` reports it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mlcd import cli

HEAVY = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "skops")


def imported(*args: str) -> set[str]:
    """The top-level packages that `python -X importtime -m mlcd ARGS` imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mlcd", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", done.stderr, re.M)
    assert "mlcd.cli" in {n.strip() for n in names}, done.stderr[-2000:]
    return {n.strip().split(".")[0] for n in names}


def test_mlcd_help_imports_no_numeric_library() -> None:
    assert not imported("--help") & set(HEAVY)


@pytest.mark.parametrize("command", [c.name for c in cli.COMMANDS])
def test_each_command_help_imports_no_numeric_library(command: str) -> None:
    assert not imported(command, "--help") & set(HEAVY)

"""The pip adapter: download wheels for another platform (the serving image's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlcd.errors import EnvironmentMissing
from mlcd.tools.base import python_module_argv, run

# The image's Python: CPython 3.11 on glibc x86-64 (Debian bookworm has glibc 2.36).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")


def download(
    dest: Path,
    *,
    requirements: Path | None = None,
    packages: Sequence[str] = (),
    require_hashes: bool = False,
    no_deps: bool = False,
    python_version: str = "3.11",
    platforms: Sequence[str] = PLATFORMS,
    timeout: float = 1200,
) -> None:
    """`pip download --only-binary=:all:` for the image's platform into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = [
        *python_module_argv("pip"),
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--abi",
        "cp" + python_version.replace(".", ""),
        "--dest",
        str(dest),
    ]
    for platform in platforms:
        argv += ["--platform", platform]
    if require_hashes:
        argv.append("--require-hashes")
    if no_deps:
        argv.append("--no-deps")
    if requirements is not None:
        argv += ["--requirement", str(requirements)]
    argv += list(packages)
    result = run(argv, timeout=timeout)
    if result.returncode != 0:
        lines = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        raise EnvironmentMissing(
            f"pip could not download the server's wheels: {(lines or ['no message'])[-1][:400]}",
            problems=lines[-8:],
            hint="the Python package index must be reachable once (then the wheels are cached "
            "in ~/.cache/mlcd/wheels); behind a proxy set PIP_INDEX_URL or pip.conf",
        )

"""The pip adapter: download wheels for another platform (the serving image's)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools.base import python_module_argv, run

# pip's words for "the index could not be reached" (before it concludes "no matching
# distribution", which it also says when it never saw the index)
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Connection refused|"
    r"ProxyError|Max retries exceeded|Network is unreachable|Temporary failure in name "
    r"resolution|Name or service not known|ConnectTimeout|Read timed out|SSLError|"
    r"Could not fetch URL|HTTP error 5\d\d",
    re.IGNORECASE,
)
# ... and for "the requirement itself cannot be met" (the user's input)
_UNRESOLVABLE = re.compile(
    r"No matching distribution found|Could not find a version that satisfies|"
    r"ResolutionImpossible|conflicting dependencies|Invalid requirement|"
    r"Cannot install .* because|is not a valid|Double requirement|"
    r"Could not open requirements file|Hashes are required|THESE PACKAGES DO NOT MATCH",
    re.IGNORECASE,
)

# The image's Python: CPython 3.11 on glibc x86-64 (Debian bookworm has glibc 2.36).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")


def download(
    dest: Path,
    *,
    requirements: Path | None = None,
    constraints: Path | None = None,
    packages: Sequence[str] = (),
    require_hashes: bool = False,
    no_deps: bool = False,
    python_version: str = "3.11",
    platforms: Sequence[str] = PLATFORMS,
    timeout: float = 1200,
    what: str = "the server's wheels",
    user_source: str | None = None,
) -> None:
    """`pip download --only-binary=:all:` for the image's platform into `dest`.

    No index reachable is exit 3. With `user_source` (the user's requirements file, for
    the message), a requirement that no wheel for the image's platform satisfies is exit 2.
    """
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
    if constraints is not None:
        argv += ["--constraint", str(constraints)]
    argv += list(packages)
    result = run(argv, timeout=timeout)
    if result.returncode != 0:
        lines = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        text = "\n".join(lines)
        last = (lines or ["no message"])[-1][:400]
        if user_source is not None and not _UNREACHABLE.search(text) and _UNRESOLVABLE.search(text):
            raise UserInputError(
                f"{user_source}: pip cannot resolve it for the serving image: {last}",
                problems=lines[-8:],
                hint="every requirement needs a wheel for CPython 3.11 on manylinux x86-64 "
                "that fits the image's pinned numpy, scipy and scikit-learn; check the names "
                "and versions",
            )
        raise EnvironmentMissing(
            f"pip could not download {what}: {last}",
            problems=lines[-8:],
            hint="the Python package index must be reachable once (then the wheels are cached "
            "in ~/.cache/mlcd/wheels); behind a proxy set PIP_INDEX_URL or pip.conf",
        )

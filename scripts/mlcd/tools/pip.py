"""The pip adapter: download wheels for another platform (the serving image's), and
install packages into the Python environment that runs mlcd (`mlcd deps`)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
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
    python_version: str | None = "3.11",
    platforms: Sequence[str] = PLATFORMS,
    timeout: float = 1200,
    what: str = "the server's wheels",
    user_source: str | None = None,
) -> None:
    """`pip download --only-binary=:all:` for the image's platform into `dest` (with
    `python_version=None`: for the interpreter running mlcd).

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
        "--dest",
        str(dest),
    ]
    if python_version is not None:
        argv += ["--implementation", "cp", "--python-version", python_version]
        argv += ["--abi", "cp" + python_version.replace(".", "")]
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
        lines = _error_lines(result.stderr)
        text = "\n".join(lines)
        last = (lines or ["no message"])[-1][:400]
        if user_source is not None and not _UNREACHABLE.search(text) and _UNRESOLVABLE.search(text):
            where = "the serving image" if python_version is not None else "this Python"
            raise UserInputError(
                f"{user_source}: pip cannot resolve it for {where}: {last}",
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


def _error_lines(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("WARNING: Location")
    ]


@dataclass(frozen=True)
class Installed:
    """A distribution pip installed."""

    name: str
    version: str
    sha256: str | None = None  # of the file pip installed it from, when pip says


def install(
    *,
    requirements: Sequence[Path] = (),
    packages: Sequence[str] = (),
    find_links: Path | None = None,
    require_hashes: bool = False,
    no_deps: bool = False,
    source: str,
    timeout: float = 1800,
) -> list[Installed]:
    """`python -m pip install` into the environment running mlcd; what it installed.

    With `find_links` pip reads only that folder (`--no-index`). A requirement that cannot
    be met (an unknown name, no fitting version, a hash mismatch, a missing file) is exit 2
    naming `source`; no index reachable is exit 3.
    """
    with tempfile.TemporaryDirectory(prefix="mlcd-pip-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [
            *python_module_argv("pip"),
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--report",
            str(report),
        ]
        if find_links is not None:
            argv += ["--no-index", "--find-links", str(find_links)]
        if require_hashes:
            argv.append("--require-hashes")
        if no_deps:
            argv.append("--no-deps")
        for path in requirements:
            argv += ["--requirement", str(path)]
        argv += list(packages)
        result = run(argv, timeout=timeout)
        if result.returncode != 0:
            lines = _error_lines(result.stderr)
            text = "\n".join(lines)
            last = (lines or ["no message"])[-1][:400]
            if _UNREACHABLE.search(text) and find_links is None:
                raise EnvironmentMissing(
                    f"pip could not install {source}: {last}",
                    problems=lines[-8:],
                    hint="the Python package index must be reachable; behind a proxy set "
                    "PIP_INDEX_URL or pip.conf",
                )
            raise UserInputError(
                f"{source}: pip cannot install it: {last}",
                problems=lines[-8:],
                hint="check the names, versions and hashes the file declares",
            )
        try:
            data = json.loads(report.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return []
    found = []
    for item in data.get("install") or []:
        meta = item.get("metadata") or {}
        archive = (item.get("download_info") or {}).get("archive_info") or {}
        digest = (archive.get("hashes") or {}).get("sha256")
        found.append(
            Installed(
                str(meta.get("name", "?")),
                str(meta.get("version", "?")),
                str(digest) if digest else None,
            )
        )
    return found

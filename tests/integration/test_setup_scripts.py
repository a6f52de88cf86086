"""The set-up scripts that `make demo` and `make test` run: idempotent, and clear when the
registry's port is taken by something else."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port held by a plain HTTP server, which is not a Docker registry."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SETUP / script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )


def test_a_taken_registry_port_is_exit_3_naming_the_holder_and_the_way_out(
    busy_port: int, tmp_path: Path
) -> None:
    done = _run("registry.sh", MLCD_REGISTRY_PORT=str(busy_port), MLCD_REGISTRY_DIR=str(tmp_path))
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert f"port {busy_port} is taken by something that is not a Docker registry" in said
    assert "python" in said  # the holder, as `ss -ltnp` names it
    assert f"MLCD_REGISTRY_PORT={busy_port + 1} make demo" in said


def test_a_second_run_of_the_whole_setup_does_nothing_and_says_so() -> None:
    first = _run("all.sh")
    assert first.returncode == 0, first.stdout + first.stderr
    again = _run("all.sh")
    assert again.returncode == 0, again.stdout + again.stderr
    lines = [line for line in again.stdout.splitlines() if line.startswith("[setup/")]
    assert len(lines) == 4, again.stdout
    assert all(" ok " in line or line.rstrip().endswith(" ok") for line in lines), again.stdout

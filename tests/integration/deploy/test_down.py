"""`mlcd down ENV` on the local and docker-host targets: everything the environment runs is
removed (containers, router, network, state and lock), the removal is recorded, a running
command's lock is respected, and a deploy afterwards starts from scratch."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

from mlcd.rollout.state import EnvLock
from tests.integration.deploy.conftest import Project
from tests.integration.deploy.test_docker_host import (  # noqa: F401 - fixtures
    _remote,
    address,
    clone,
    remote_project,
    test_host,
)

FIRST = {"strategy": "canary", "canary": {"steps": [100], "interval": "1s"}}


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def _docker(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if line.strip()]


def _down_refusals(project: Project) -> None:
    """Without a terminal and without --yes: exit 2; a held lock: exit 1 naming it."""
    asked = project.mlcd("down", "staging")
    assert asked.returncode == 2, asked.stdout + asked.stderr
    assert "--yes" in asked.stdout + asked.stderr


def _status_says_nothing(project: Project) -> None:
    status = project.mlcd("status", "staging", "--format", "json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["stable"] is None
    assert data["rollout"] is None


def _recorded(project: Project) -> dict[str, Any]:
    result = project.result("down-staging")
    assert result["status"] == "pass"
    details = result["details"]
    assert details["removed"], details
    assert details["by"]
    assert details["at"]
    return details


def test_down_on_the_local_target(make_project: Any, standin_images: dict[str, str]) -> None:
    project: Project = make_project({"staging": FIRST})
    v1 = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "staging", "--release", v1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.containers()
    assert _listening("127.0.0.1", project.ports["staging"])

    _down_refusals(project)
    lock = EnvLock(project.state / "staging", "staging")
    lock.acquire("mlcd deploy staging")
    try:
        busy = project.mlcd("down", "staging", "--yes")
    finally:
        lock.release()
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert "mlcd deploy staging" in busy.stdout + busy.stderr
    assert project.containers()  # nothing was removed

    down = project.mlcd("down", "staging", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    details = _recorded(project)
    assert any(line.startswith("container ") for line in details["removed"])
    assert any(line.startswith("router ") for line in details["removed"])
    label = f"label=mlcd.project={project.name}"
    assert _docker("ps", "--all", "--format", "{{.Names}}", "--filter", label) == []
    assert _docker("network", "ls", "--format", "{{.Name}}", "--filter", label) == []
    assert _docker("volume", "ls", "--format", "{{.Name}}", "--filter", label) == []
    assert not _listening("127.0.0.1", project.ports["staging"])
    assert not (project.state / "staging" / "state.json").exists()
    _status_says_nothing(project)

    again = project.mlcd("down", "staging", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to remove" in again.stdout
    assert project.result("down-staging")["details"]["removed"] == []

    fresh = project.mlcd("deploy", "staging", "--release", v1)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "deployed"
    assert _listening("127.0.0.1", project.ports["staging"])


def test_down_on_the_docker_host_target(
    remote_project: Any,  # noqa: F811 - the fixture imported above
    test_host: dict[str, str],  # noqa: F811
    standin_images: dict[str, str],
    tmp_path: Path,
) -> None:
    project: Project = remote_project(FIRST)
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "staging", "--release", v1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _listening(host, port)
    _down_refusals(project)

    down = project.mlcd("down", "staging", "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
    details = _recorded(project)
    removed = " ".join(details["removed"])
    assert "network " in removed
    assert "state volume " in removed
    base = f"mlcd-{project.name}-staging"
    label = f"label=mlcd.project={project.name}"
    assert _remote(test_host, "ps", "--all", "--quiet", "--filter", label).split() == []
    networks = _remote(
        test_host, "network", "ls", "--format", "{{.Name}}", "--filter", f"name={base}"
    )
    assert networks.split() == []
    volumes = _remote(
        test_host, "volume", "ls", "--format", "{{.Name}}", "--filter", f"name={base}"
    )
    assert volumes.split() == []
    assert not _listening(host, port)
    _status_says_nothing(clone(project, tmp_path, "second"))

    again = project.mlcd("down", "staging", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.result("down-staging")["details"]["removed"] == []

    fresh = project.mlcd("deploy", "staging", "--release", v1)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert _listening(host, port)

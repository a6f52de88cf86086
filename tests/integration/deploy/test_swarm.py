"""The swarm target against a three-node Docker Swarm on this machine
(scripts/setup/test-cluster.sh: a manager with sshd and two workers, each a network
namespace with its own engine, labelled mlcd.node=sw1|sw2|sw3).

mlcd's side runs no model container and no nginx: the releases are services of the swarm,
the router a service on the manager (the node named in `swarm.router-nodes`), reached
through `ssh://root@MANAGER` with the host key checked. Traffic goes only to the nodes'
addresses and to 127.0.0.1 tunnels mlcd opens.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcd.config import load_config
from mlcd.rollout.targets import engine_target
from tests.integration.deploy.conftest import ROOT, Project
from tests.integration.deploy.test_docker_host import ROUTER_IMAGE, Client, clone, remote_state

# wide tolerances: the judge decides in a few intervals (these tests are about the target)
FAST = {
    "max-error-rate-increase": 0.05,
    "latency-ok-ms": 1000,
    "quantiles": {"p50": None},  # a p99 bound needs hundreds of requests per arm
    "max-p99-latency-ms": 5000,
    "accept-slow-plan": True,
}
ENV_FILE = Path(os.environ.get("MLCD_TEST_CLUSTER_DIR", "/var/lib/mlcd-testcluster")) / "env"


def _setup() -> dict[str, str]:
    for script in ("test-cluster.sh", "router-image.sh"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup" / script)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="session")
def cluster() -> dict[str, str]:
    """The test cluster's coordinates (set up by `make test`; the script is idempotent and
    brings back a node whose engine a test killed)."""
    return _setup()


def manager(cluster: dict[str, str], *args: str) -> str:
    """`docker ARGS` on the manager's engine (the test's own view, not mlcd's)."""
    done = subprocess.run(
        ["/usr/bin/docker", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": cluster["MLCD_TEST_CLUSTER_DOCKER_1"]},
    )
    return done.stdout


def leftovers(cluster: dict[str, str], project: str) -> dict[str, list[str]]:
    """What the swarm still has of a project: services, configs, networks, containers."""
    label = f"label=mlcd.project={project}"
    found = {
        "services": manager(cluster, "service", "ls", "-q", "--filter", label).split(),
        "configs": manager(cluster, "config", "ls", "-q", "--filter", label).split(),
        "networks": manager(cluster, "network", "ls", "-q", "--filter", label).split(),
        "containers": manager(cluster, "ps", "-aq", "--filter", label).split(),
    }
    return {kind: ids for kind, ids in found.items() if ids}


@pytest.fixture
def swarm_project(make_project: Any, cluster: dict[str, str]) -> Iterator[Any]:
    made: list[Project] = []

    def make(env: dict[str, Any]) -> Project:
        section = {
            "target": "swarm",
            "host": cluster["MLCD_TEST_CLUSTER"],
            "known-hosts": cluster["MLCD_TEST_CLUSTER_KNOWN_HOSTS"],
            "key-file": cluster["MLCD_TEST_CLUSTER_KEY"],
            "port": random.randint(20000, 29999),  # a port on the router's node
            "router": {"image": ROUTER_IMAGE},
            "swarm": {"replicas": 3, "router-nodes": ["node.labels.mlcd.node==sw1"]},
            **env,
        }
        project = make_project({"staging": section})
        project.ports = {}  # nothing listens on this machine
        made.append(project)
        return project

    yield make
    for project in made:
        label = f"label=mlcd.project={project.name}"
        for kind in ("service", "config"):
            ids = manager(cluster, kind, "ls", "-q", "--filter", label).split()
            if ids:
                manager(cluster, kind, "rm", *ids)
        ids = manager(cluster, "ps", "-aq", "--filter", label).split()
        if ids:
            manager(cluster, "rm", "-f", *ids)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids = manager(cluster, "network", "ls", "-q", "--filter", label).split()
            if not ids or manager(cluster, "network", "rm", *ids).strip() != "":
                break
            time.sleep(1)


def down(project: Project) -> list[str]:
    """`Target.down()` of the project's staging environment, as `mlcd down` runs it."""
    loaded = load_config(project.config)
    section = loaded.config.environments["staging"]
    target = engine_target(
        project.name,
        "staging",
        section,
        port=int(project.envs["staging"]["port"]),
        state_dir=project.state / "staging",
        root=project.root,
    )
    try:
        return target.down()
    finally:
        target.close()


def kill_node(cluster: dict[str, str], n: int) -> bool:
    """The node dies: SIGKILL to its dockerd and containerd, the shims and the containers'
    processes (the shims' descendants); not to the socat that forwards the registry."""
    netns = f"mlcd-sw{n}"
    listed = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
    ).stdout.split()
    engine = Path(cluster[f"MLCD_TEST_CLUSTER_PIDFILE_{n}"]).read_text().strip()
    roots = [
        pid
        for pid in listed
        if "socat" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    assert engine in roots, (engine, roots)
    doomed: list[str] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        children = subprocess.run(
            ["pgrep", "-P", pid], capture_output=True, text=True, check=False
        ).stdout.split()
        todo += [c for c in children if c not in doomed]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    return True


def spread(cluster: dict[str, str], service: str) -> set[str]:
    """The nodes (mlcd-sw1…) the running tasks of a service are on."""
    out = manager(
        cluster,
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    )
    return {line.split()[0] for line in out.splitlines() if " Running" in line}


def test_canary_on_three_nodes_serves_without_errors_and_down_leaves_nothing(
    swarm_project: Any, cluster: dict[str, str], standin_images: dict[str, str], tmp_path: Path
) -> None:
    project = swarm_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 40},
            "analysis": FAST,
        }
    )
    port = int(project.envs["staging"]["port"])
    host = cluster["MLCD_TEST_CLUSTER_ADDR_1"]
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert project.result("deploy-staging")["details"]["url"] == f"http://{host}:{port}"
    v2 = project.release(standin_images["clean"])
    with Client(host, port, rps=50) as client:
        started = time.monotonic()
        second = project.mlcd("deploy", "staging", "--release", v2, timeout=900)
        took = time.monotonic() - started
        time.sleep(1)
    print(f"swarm canary with 3 replicas: {took:.1f}s, client saw {dict(client.seen)}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "promoted"
    assert set(client.seen) == {200}, client.seen  # 0 client-visible errors
    assert client.seen[200] > 100
    assert {v1, v2} <= set(client.versions), client.versions
    # the release's three tasks ran on the three nodes
    name = f"mlcd-{project.name}-staging-{v2}".replace(".", "-")
    service = next(s for s in manager(cluster, "service", "ls", "--format", "{{.Name}}").split()
                   if s.startswith(name))  # fmt: skip
    assert spread(cluster, service) == {"mlcd-sw1", "mlcd-sw2", "mlcd-sw3"}
    # the state is in the swarm: a second checkout (no state folder) sees the same truth
    other = clone(project, tmp_path, "second")
    state = remote_state(other)
    assert state["stable"]["version"] == v2
    assert state["rollout"] is None
    events = [h["event"] for h in state["history"]]
    assert events.count("live") == 1, events
    assert events.count("promoted") == 1, events
    assert not (other.state / "staging").exists()
    # down: no service, config, network or container of the environment is left
    removed = down(other)
    assert any(line.startswith("service ") for line in removed), removed
    assert any(line.startswith("network ") for line in removed), removed
    assert leftovers(cluster, project.name) == {}
    assert down(other) == []  # idempotent


def test_a_worker_engine_killed_at_the_50_step_keeps_serving_and_status_tells_the_truth(
    swarm_project: Any, cluster: dict[str, str], standin_images: dict[str, str], tmp_path: Path
) -> None:
    project = swarm_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "3s", "min-requests": 40},
            "analysis": FAST,
        }
    )
    port = int(project.envs["staging"]["port"])
    host = cluster["MLCD_TEST_CLUSTER_ADDR_1"]
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    v2 = project.release(standin_images["clean"])
    killed = False
    try:
        with Client(host, port, rps=50) as client:
            deploy = project.spawn("deploy", "staging", "--release", v2)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and deploy.poll() is None:
                if "50% of traffic" in deploy.err_file.read_text():
                    break
                time.sleep(0.2)
            before = client.seen.copy()
            killed = kill_node(cluster, 3)
            out, err = deploy.communicate(timeout=900)
            time.sleep(1)
        failed = sum(n for status, n in client.seen.items() if status != 200)
        print(
            f"worker killed at the 50% step: deploy exit {deploy.returncode}, client saw "
            f"{dict(client.seen)} ({dict(before)} before the kill)"
        )
        outcome = project.result("deploy-staging")["details"]["outcome"]
        # the judge's rule decides: promoted (exit 0) or rolled back (exit 1), never stuck
        assert (deploy.returncode, outcome) in ((0, "promoted"), (1, "rolled back")), out + err
        # at most the requests in flight on that node: the client sends one at a time
        assert failed <= 1, client.seen
        other = clone(project, tmp_path, "second")
        state = remote_state(other)
        assert state["rollout"] is None
        assert state["stable"]["version"] == (v2 if outcome == "promoted" else v1)
    finally:
        if killed:
            _setup()  # the node's engine back (it rejoins the swarm)
    assert down(project)
    assert leftovers(cluster, project.name) == {}

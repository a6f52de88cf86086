"""One command: canary and blue/green timings on the docker-host target (over SSH) and the
swarm target (a three-node swarm, through its manager over SSH) against the local target,
the same releases and settings, interleaved.

    sudo bash scripts/setup/test-host.sh && sudo bash scripts/setup/test-cluster.sh
    bash scripts/setup/router-image.sh
    .venv/bin/python benchmarks/deploy_targets.py            # 3 rounds, ~15 minutes
    .venv/bin/python benchmarks/deploy_targets.py --rounds 1 --targets local,swarm

Each round deploys, on each target: a first release (no analysis), then a new release by
canary (steps 50, 100; interval 2 s; 2 intervals a step; load-test 50 requests/s), then one
by blue/green (preview 2 s, interval 1 s, scale-down-delay 2 s). The analysis waits are the
same on both targets (about 4 s per canary step, 2 s of preview and 2 s of watch), so the
difference is what the target costs: SSH round trips (docker calls, state writes, router
reloads through `docker exec`) against local docker calls and an nginx process; on the swarm
(`swarm.replicas: 3`): services scheduled on three nodes, each pulling the image, the router
a service whose routes are PUT to its task, and the judge reading every task. Printed:
seconds per deploy (median of the rounds) and each target's ratio to local.
The docker-host side is the test host of scripts/setup/test-host.sh (its own address,
dockerd and sshd on this machine); the machine is shared, figures are as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from mlcd.tools.nginx import Nginx  # noqa: E402
from tests.integration.deploy.conftest import Project, holdout_csv  # noqa: E402

ENV_FILE = Path("/var/lib/mlcd-testhost/env")
CLUSTER_FILE = Path("/var/lib/mlcd-testcluster/env")
TARGETS = ("local", "docker-host", "swarm")
ROUTER_IMAGE = "127.0.0.1:5000/mlcd-router:nginx-bookworm"
IMAGE = "127.0.0.1:5000/mlcd-bench-deploy-standin"


def _docker(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, env=env, timeout=600
    )
    return done.stdout.strip()


def standin_image(folder: Path) -> str:
    shutil.copy(ROOT / "tests" / "integration" / "deploy" / "standin_server.py", folder)
    (folder / "Dockerfile").write_text(
        "FROM local/python:3.11-bookworm\nCOPY standin_server.py /srv/server.py\n"
        'ENV STANDIN_FAIL_RATE=0\nUSER 65534\nCMD ["python3", "/srv/server.py"]\n'
    )
    _docker("build", "--network", "none", "--quiet", "-t", f"{IMAGE}:clean", str(folder))
    _docker("push", "--quiet", f"{IMAGE}:clean")
    digests = json.loads(
        _docker("image", "inspect", "--format", "{{json .RepoDigests}}", IMAGE + ":clean")
    )
    return str(next(d for d in digests if d.startswith(IMAGE + "@")))


def _coordinates(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def environments(
    kind: str, host: dict[str, str], cluster: dict[str, str], ports: tuple[int, int]
) -> dict[str, Any]:
    remote: dict[str, Any] = {}
    if kind == "swarm":
        remote = {
            "target": "swarm",
            "host": cluster["MLCD_TEST_CLUSTER"],
            "known-hosts": cluster["MLCD_TEST_CLUSTER_KNOWN_HOSTS"],
            "key-file": cluster["MLCD_TEST_CLUSTER_KEY"],
            "router": {"image": ROUTER_IMAGE},
            "swarm": {"replicas": 3, "router-nodes": ["node.labels.mlcd.node==sw1"]},
        }
    elif kind == "docker-host":
        remote = {
            "target": "docker-host",
            "host": host["MLCD_TEST_HOST"],
            "known-hosts": host["MLCD_TEST_HOST_KNOWN_HOSTS"],
            "key-file": host["MLCD_TEST_HOST_KEY"],
            "router": {"image": ROUTER_IMAGE},
        }
    analysis = {"max-p99-latency-ms": 2000, "inconclusive-limit": 20, "accept-slow-plan": True}
    return {
        "staging": {
            **remote,
            "port": ports[0],
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 50},
            "analysis": analysis,
            "load-test": {"rps": 50},
        },
        "production": {
            **remote,
            "port": ports[1],
            "strategy": "blue-green",
            "blue-green": {"preview-duration": "2s", "scale-down-delay": "2s",
                           "interval": "1s", "min-requests": 20, "rps": 40},
            "analysis": analysis,
        },
    }  # fmt: skip


def timed(project: Project, env: str, version: str) -> float:
    start = time.monotonic()
    done = project.mlcd("deploy", env, "--release", version, timeout=600)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"deploy {env} {version} failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--targets", default=",".join(TARGETS), help="local is always run")
    args = parser.parse_args()
    kinds = ["local", *(k for k in TARGETS[1:] if k in args.targets.split(","))]
    host = _coordinates(ENV_FILE) if "docker-host" in kinds else {}
    cluster = _coordinates(CLUSTER_FILE) if "swarm" in kinds else {}
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-deploy-"))
    image = standin_image(work)
    figures: dict[str, dict[str, list[float]]] = {}
    projects: list[Project] = []
    try:
        for _ in range(args.rounds):
            for kind in kinds:
                name = f"bd-{uuid.uuid4().hex[:8]}"
                root = work / name
                root.mkdir()
                ports = (21000 + len(projects) * 2, 21001 + len(projects) * 2)
                envs = environments(kind, host, cluster, ports)
                project = Project(root=root, name=name, envs=envs)
                project.write_config()
                holdout_csv(project.out / "train" / "holdout.csv")
                projects.append(project)
                releases = [project.release(image) for _ in range(3)]
                row = figures.setdefault(kind, {})
                row.setdefault("first", []).append(timed(project, "staging", releases[0]))
                row.setdefault("canary", []).append(timed(project, "staging", releases[1]))
                timed(project, "production", releases[0])
                row.setdefault("blue-green", []).append(timed(project, "production", releases[2]))
                print(kind, {k: round(v[-1], 1) for k, v in row.items()}, flush=True)
    finally:
        engines: list[dict[str, str] | None] = [None]
        if host:
            engines.append({**os.environ, "DOCKER_HOST": host["MLCD_TEST_HOST_DOCKER"]})
        swarm = {**os.environ, "DOCKER_HOST": cluster.get("MLCD_TEST_CLUSTER_DOCKER_1", "")}
        for project in projects:
            label = f"label=mlcd.project={project.name}"
            for env_vars in engines:
                ids = _docker("ps", "-aq", "--filter", label, env=env_vars).split()
                if ids:
                    _docker("rm", "-f", *ids, env=env_vars)
            if cluster:
                for kind in ("service", "config", "container"):
                    ids = _docker(kind, "ls", "-aq" if kind == "container" else "-q",
                                  "--filter", label, env=swarm).split()  # fmt: skip
                    if ids:
                        _docker(kind, "rm", *(["-f"] if kind == "container" else []), *ids,
                                env=swarm)  # fmt: skip
            for env in project.envs:
                Nginx(project.state / env / "nginx").stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedian of {args.rounds} rounds, seconds per `mlcd deploy`:")
    others = kinds[1:]
    print(f"{'deploy':<12}{'local':>8}" + "".join(f"{k:>13}{'ratio':>7}" for k in others))
    for what in ("first", "canary", "blue-green"):
        local = statistics.median(figures["local"][what])
        cells = ""
        for kind in others:
            took = statistics.median(figures[kind][what])
            cells += f"{took:>13.1f}{took / local:>7.2f}"
        print(f"{what:<12}{local:>8.1f}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

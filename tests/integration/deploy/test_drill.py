"""The fault drill of the `local` target, as tests (issue 15, docs/deploy.md).

- the Docker engine restarts under a deployed staging and production: both answer again
  through their routers with no mlcd command run. The engine restarted is the test host's
  own (scripts/setup/test-host.sh), never this machine's main one: mlcd runs inside the
  test host's network namespace with DOCKER_HOST on its engine, as it would on a machine of
  its own, and every probe is made from inside that namespace;
- two checkouts of one project side by side on one engine;
- a blue/green deploy SIGKILLed during its post-switch watch, reconciled by the next
  command; a deploy refused meanwhile writes its own result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcd import releases
from mlcd.ports import free_port
from mlcd.registry import CHAMPION
from mlcd.tools.nginx import Nginx
from tests.integration.deploy.conftest import ROOT, Project
from tests.integration.deploy.helpers import ROW, post, wait_for
from tests.integration.deploy.test_docker_host import test_host  # noqa: F401 - a fixture

NS = os.environ.get("MLCD_TEST_HOST_NS", "mlcd-testhost")
NETNS = f"/var/run/netns/{NS}"

# Run inside the test host's namespace (argv: timeout, a row, ports): until every port answers
# 200 to POST /predict → {port: [time.time() when it first did, model_version]} on stdout.
PROBE = """
import http.client, json, sys, time
deadline = time.monotonic() + float(sys.argv[1])
ports = [int(p) for p in sys.argv[3:]]
body = json.dumps({"records": [json.loads(sys.argv[2])]}).encode()
back = {}
while len(back) < len(ports) and time.monotonic() < deadline:
    for port in ports:
        if port in back:
            continue
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status == 200:
                back[port] = [time.time(), json.loads(data)["model_version"]]
        except OSError:
            pass
        finally:
            conn.close()
    time.sleep(0.05)
print(json.dumps(back))
"""


def _in_netns(*argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    # nsenter, not `ip netns exec` (that remounts /sys): only the network is the test host's
    return subprocess.run(
        ["nsenter", f"--net={NETNS}", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=timeout,
    )


def _probe(ports: list[int], timeout: float) -> dict[int, tuple[float, str]]:
    done = _in_netns(sys.executable, "-c", PROBE, str(timeout), json.dumps(ROW), *map(str, ports))
    assert done.returncode == 0, done.stderr
    return {int(k): (v[0], v[1]) for k, v in json.loads(done.stdout).items()}


class HostProject:
    """A project whose mlcd runs on the test host: its namespace and its Docker engine."""

    def __init__(self, project: Project, docker_host: str) -> None:
        self.project = project
        self.docker_host = docker_host

    def env(self) -> dict[str, str]:
        return {**self.project.env(), "DOCKER_HOST": self.docker_host}

    def mlcd(self, *args: str) -> subprocess.CompletedProcess[str]:
        done: subprocess.CompletedProcess[str] = _in_netns(
            *self.project.argv(*args), env=self.env()
        )
        return done

    def docker(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**os.environ, "DOCKER_HOST": self.docker_host},
        )
        return done.stdout.strip()

    def started(self) -> dict[str, str]:
        """name → when each of this project's containers last started."""
        ids = list(self.containers().values())
        out = self.docker("inspect", "--format", "{{.Name}} {{.State.StartedAt}}", *ids)
        return {n.lstrip("/"): t for n, t in (line.split() for line in out.splitlines())}

    def containers(self) -> dict[str, str]:
        """name → id of this project's containers on the test host's engine."""
        out = self.docker(
            "ps", "-a", "--filter", f"label=mlcd.project={self.project.name}",
            "--format", "{{.Names}} {{.ID}}",
        )  # fmt: skip
        return dict(line.split() for line in out.splitlines() if line)


@pytest.fixture
def host_project(
    make_project: Any,
    test_host: dict[str, str],  # noqa: F811 - the fixture imported above
) -> Iterator[Any]:
    made: list[HostProject] = []

    def make(envs: dict[str, Any]) -> HostProject:
        made.append(HostProject(make_project(envs), test_host["MLCD_TEST_HOST_DOCKER"]))
        return made[-1]

    yield make
    for hp in made:  # make_project stops the routers; the containers are on the test host
        ids = list(hp.containers().values())
        if ids:
            hp.docker("rm", "-f", *ids)


def _restart_test_host_engine(test_host: dict[str, str]) -> float:  # noqa: F811
    """Stop the test host's dockerd and start it again; time.time() when it answers."""
    pidfile = Path(test_host["MLCD_TEST_HOST_KEY"]).parents[1] / "dockerd.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the test host's dockerd to stop")
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup" / "test-host.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr  # it waits for `docker info`
    return time.time()


def test_staging_and_production_answer_after_the_engine_restarts_with_no_mlcd_command(
    host_project: Any,
    standin_images: dict[str, str],
    test_host: dict[str, str],  # noqa: F811
) -> None:
    hp = host_project(
        {
            "staging": {"strategy": "canary"},
            "production": {"strategy": "blue-green"},
        }
    )
    project = hp.project
    v1 = project.release(standin_images["clean"])
    for env in ("staging", "production"):
        done = hp.mlcd("deploy", env, "--release", v1)
        assert done.returncode == 0, done.stdout + done.stderr
    ports = [project.ports["staging"], project.ports["production"]]
    before = _probe(ports, 10)
    assert {p: v for p, (_, v) in before.items()} == dict.fromkeys(ports, v1)
    containers = hp.containers()
    assert len(containers) == 2
    started = hp.started()
    engine_back = _restart_test_host_engine(test_host)
    back = _probe(ports, 60)
    assert set(back) == set(ports), f"answering again: {back}, wanted {ports}"
    seconds = {env: back[project.ports[env]][0] - engine_back for env in ("staging", "production")}
    print(
        "back after the engine answered again: "
        + ", ".join(f"{env} {s:.2f}s" for env, s in seconds.items())
    )
    assert {v for _, v in back.values()} == {v1}
    # the engine restarted the very containers (restart policy, recorded host ports)
    assert hp.containers() == containers
    again = hp.started()
    assert all(again[name] != started[name] for name in containers), (started, again)
    for env in ("staging", "production"):
        status = hp.mlcd("status", env, "--format", "json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["stable"]["version"] == v1
        assert data["notes"] == []  # nothing needed repairing


# ---------------------------------------------------------------------- two checkouts


def _second_checkout(project: Project, label: str, port: int) -> Project:
    """Another clone of the same project (same name, same model registry), its own folder."""
    root = project.root.parent / f"{project.name}-{label}"
    root.mkdir()
    other = Project(root=root, name=project.name, envs=json.loads(json.dumps(project.envs)))
    other.envs["staging"]["port"] = port
    other.write_config()
    text = other.config.read_text().replace("path: registry", f"path: {project.root}/registry")
    other.config.write_text(text)
    (other.out / "train").mkdir(parents=True)
    shutil.copy(project.out / "train" / "holdout.csv", other.out / "train" / "holdout.csv")
    return other


def _labels(name: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Labels}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    labels: dict[str, str] = json.loads(out)
    return labels


def _serves(port: int) -> str:
    status, body, _ = post(port, json.dumps({"records": [ROW]}).encode())
    assert status == 200, body
    return str(json.loads(body)["model_version"])


def test_two_checkouts_of_one_project_deploy_side_by_side(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    env = {
        "strategy": "canary",
        "canary": {"steps": [50, 100], "interval": "1s", "min-requests": 40},
        # the plan (0.5 % errors assumed) says 30 one-second intervals may not decide; the
        # stand-in has no errors and passes sooner
        "analysis": {"max-p99-latency-ms": 2000, "accept-slow-plan": True},
        "load-test": {"rps": 80},
    }
    first = make_project({"staging": {**env, "port": free_port()}})
    first.ports = {}  # the router ports are the ones in each checkout's mlcd.yaml
    second = _second_checkout(first, "second", free_port())
    try:
        checkouts = {"first": first, "second": second}
        port = {k: int(p.envs["staging"]["port"]) for k, p in checkouts.items()}
        v1 = first.release(standin_images["clean"])
        for p in checkouts.values():
            done = p.mlcd("deploy", "staging", "--release", v1)
            assert done.returncode == 0, done.stdout + done.stderr
        live = {}
        for label, p in checkouts.items():
            version = first.release(standin_images["clean"])
            done = p.mlcd("deploy", "staging", "--release", version)
            assert done.returncode == 0, done.stdout + done.stderr
            assert p.result("deploy-staging")["details"]["outcome"] == "promoted"
            live[label] = version
        # each checkout's container is there, labelled with its own checkout id
        containers = first.containers()
        assert len(containers) == 2, containers
        ids = {_labels(c)["mlcd.checkout"]: _labels(c)["mlcd.version"] for c in containers}
        assert sorted(ids.values()) == sorted(live.values())
        assert len(ids) == 2
        for label, p in checkouts.items():
            status = p.mlcd("status", "staging")
            assert status.returncode == 0, status.stderr
            assert f"live: {live[label]}" in status.stdout, status.stdout
            assert _serves(port[label]) == live[label]
    finally:
        Nginx(second.state / "staging" / "nginx").stop()
        Nginx(first.state / "staging" / "nginx").stop()


# ---------------------------------------------------- blue/green killed after the switch


def _model_version(project: Project, version: str) -> str:
    found = {r.version: r for r in releases.all_releases(project.registry)}
    return found[version].model_version


def _deployments(project: Project, version: str, env: str) -> list[dict[str, Any]]:
    model = project.registry.get(_model_version(project, version))
    items = model.attachments.get("deployments") or []
    return [d for d in items if d["env"] == env and d["release"] == version]


def test_blue_green_killed_during_the_watch_keeps_serving_and_is_recorded_by_the_next_command(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "production": {
                "strategy": "blue-green",
                "blue-green": {
                    "preview-duration": "1s",
                    "scale-down-delay": "300s",  # the watch the process is killed in
                    "interval": "1s",
                    "min-requests": 20,
                    "rps": 40,
                },
                "analysis": {"max-p99-latency-ms": 2000},
            }
        }
    )
    port = project.ports["production"]
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "production", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    assert project.registry.aliases()[CHAMPION] == _model_version(project, v1)
    v2 = project.release(standin_images["clean"])
    running = project.result("deploy-production")  # the v1 deploy's
    proc = project.spawn("deploy", "production", "--release", v2)
    try:

        def switched() -> bool:
            if proc.poll() is not None:
                raise AssertionError(proc.err_file.read_text())
            stable = project.state_json("production").get("stable") or {}
            return bool(stable.get("version") == v2)

        wait_for(switched, 120, "the switch to the new release")
        time.sleep(1.5)  # inside the watch
        # a second deploy meanwhile is refused, with a result of its own
        again = project.mlcd("deploy", "production", "--release", v2)
        assert again.returncode == 1, again.stdout + again.stderr
        assert f"locked by pid {proc.pid}" in again.stdout + again.stderr
        refused = project.result("deploy-production-refused")
        assert refused["status"] == "fail"
        assert project.result("deploy-production") == running
        assert proc.poll() is None, "the deploy ended before it could be killed in its watch"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # killed: production still serves the new release, which is not recorded yet
    assert {_serves(port) for _ in range(20)} == {v2}
    assert project.state_json("production")["unrecorded"]["version"] == v2
    assert _deployments(project, v2, "production") == []
    assert project.registry.aliases()[CHAMPION] == _model_version(project, v1)
    status = project.mlcd("status", "production", "--format", "json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert any(f"recorded {v2}" in n for n in data["notes"]), data["notes"]
    assert data["stable"]["version"] == v2
    # recorded as a promotion by blue/green would have: a deployment and the champion
    recorded = _deployments(project, v2, "production")
    assert [(d["status"], d["strategy"]) for d in recorded] == [("healthy", "blue-green")]
    normal = _deployments(project, v1, "production")
    assert sorted(recorded[0]) == sorted(normal[0])
    assert project.registry.aliases()[CHAMPION] == _model_version(project, v2)
    assert not project.state_json("production").get("unrecorded")
    again = project.mlcd("status", "production", "--format", "json")
    assert json.loads(again.stdout)["notes"] == []  # recorded once
    assert len(_deployments(project, v2, "production")) == 1
    assert {_serves(port) for _ in range(20)} == {v2}


# ------------------------------------------------------- a release killed after the push


def _result(stage: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "status": "pass",
        "started": "2026-01-01T00:00:00Z",
        "duration_s": 1.0,
        "summary": f"{stage} passed",
        "details": details,
    }


KILL_AT_PULL = """#!/bin/sh
# `docker pull` comes right after `docker push` in `mlcd release`, before the record:
# the release (this wrapper's parent) is SIGKILLed there, once (the marker file)
if [ "$1" = pull ] && [ ! -e "$MLCD_DRILL_MARK" ]; then
    touch "$MLCD_DRILL_MARK"
    kill -KILL "$PPID"
    exit 137
fi
exec "$MLCD_DRILL_DOCKER" "$@"
"""


def test_a_release_killed_after_the_push_is_resumed_with_its_version(
    make_project: Any, tmp_path: Path
) -> None:
    project = make_project({"staging": {"strategy": "canary"}})
    name = f"127.0.0.1:5000/mlcd-test-drill-{project.name}"
    text = project.config.read_text() + f"image:\n  name: {name}\n"
    project.config.write_text(text)
    # an image of its own (a label makes its id unique), and the bundle of a passed build
    context = tmp_path / "image"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM local/python:3.11-bookworm\nLABEL drill={project.name}\nUSER 65534\n"
    )
    image_id = subprocess.run(
        ["docker", "build", "--network", "none", "--quiet", str(context)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.strip()  # fmt: skip
    model = project.root / "model.bin"
    model.write_bytes(os.urandom(32))
    record = project.registry.register(
        model_file=model, metadata={"fingerprint": project.name}, metrics={},
        verdict={"passed": True, "checks": []},
    )  # fmt: skip
    for stage, details in (
        ("build", {"image_id": image_id, "name": name, "contract": {"passed": True}}),
        ("evaluate", {"registry": {"version": record.version}}),
    ):
        (project.out / stage).mkdir(parents=True)
        (project.out / stage / "result.json").write_text(json.dumps(_result(stage, details)))
    first = project.release(f"{name}@sha256:{'0' * 64}")  # an earlier release: 0.1.0
    assert first == "0.1.0"
    # the release is killed between `docker push` and the record
    wrapper = tmp_path / "bin" / "docker"
    wrapper.parent.mkdir()
    wrapper.write_text(KILL_AT_PULL)
    wrapper.chmod(0o755)
    env = {
        **project.env(),
        "PATH": f"{wrapper.parent}:{os.environ['PATH']}",
        "MLCD_DRILL_DOCKER": str(shutil.which("docker")),
        "MLCD_DRILL_MARK": str(tmp_path / "killed"),
    }
    try:
        killed = subprocess.run(
            project.argv("release"),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        assert (tmp_path / "killed").exists()  # by the wrapper, at `docker pull`
        # pushed, not recorded
        tagged = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", image_id],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert name + "@sha256:" in tagged
        assert [r.version for r in releases.all_releases(project.registry)] == ["0.1.0"]
        # the next release takes the version the killed one pushed, with the same image
        again = subprocess.run(
            project.argv("release"),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        result = project.result("release")
        assert result["details"]["version"] == "0.1.1", result
        assert not any("skipped" in r for r in result["reasons"]), result["reasons"]
        assert result["details"]["image"] in json.loads(tagged)
        stored = Path(result["details"]["evidence"])
        digest = "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest()
        assert digest == result["details"]["evidence_digest"]
        found = [r.version for r in releases.all_releases(project.registry)]
        assert sorted(found) == ["0.1.0", "0.1.1"]
        # and the one after is 0.1.2: no gap
        assert releases.next_version(project.registry) == "0.1.2"
    finally:
        subprocess.run(
            ["docker", "image", "rm", "--force", image_id], capture_output=True, check=False
        )


# ------------------------------------------------------- the router process gone (a reboot)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4, the parent's pid
            found.append(int(stat.parent.name))
    return found


def test_a_router_process_that_died_is_restarted_by_the_next_status(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    """After a reboot the containers come back with the engine; mlcd's nginx does not."""
    project = make_project({"staging": {"strategy": "canary"}})
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    port = project.ports["staging"]
    assert _serves(port) == v1
    masters = [
        pid
        for nginx in (Nginx(project.state / "staging" / "nginx"),)
        for pid in (nginx.master_pid(), Nginx(nginx.prefix / "front").master_pid())
        if pid is not None
    ]
    assert masters
    for pid in [*masters, *(c for m in masters for c in _children(m))]:
        os.kill(pid, signal.SIGKILL)  # this test's own nginx processes, by pid

    def refused() -> bool:
        try:
            post(port, b"{}")
        except OSError:
            return True
        return False

    wait_for(refused, 30, "the router to stop answering")
    status = project.mlcd("status", "staging", "--format", "json")
    assert status.returncode == 0, status.stderr
    notes = json.loads(status.stdout)["notes"]
    assert any("the router was not running: restarted" in n for n in notes), notes
    assert {_serves(port) for _ in range(10)} == {v1}

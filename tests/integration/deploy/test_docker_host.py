"""The docker-host target against a second host on this machine (scripts/setup/test-host.sh).

The test host is a network namespace with its own address, Docker engine and sshd. mlcd's
side runs no model container and no nginx: every container and the router run on the test
host, reached through `ssh://root@ADDR` with the host key checked against its known_hosts.
Traffic goes only to the test host's address (and to 127.0.0.1 tunnels mlcd opens).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deploy.conftest import ROOT, Project
from tests.integration.deploy.helpers import ROW, wait_for
from tests.integration.deploy.test_bluegreen import WRK_SCRIPT, parse_wrk

ENV_FILE = Path(os.environ.get("MLCD_TEST_HOST_DIR", "/var/lib/mlcd-testhost")) / "env"
ROUTER_IMAGE = "127.0.0.1:5000/mlcd-router:nginx-bookworm"


@pytest.fixture(scope="session")
def test_host() -> dict[str, str]:
    """The test host's coordinates (set up by `make test`; the script is idempotent)."""
    for script in ("test-host.sh", "router-image.sh"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup" / script)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)


def _remote(host: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": host["MLCD_TEST_HOST_DOCKER"]},
    )
    return done.stdout


@pytest.fixture
def remote_project(make_project: Any, test_host: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    made: list[Project] = []

    def make(env: dict[str, Any], *, name: str = "staging") -> Project:
        section = {
            "target": "docker-host",
            "host": test_host["MLCD_TEST_HOST"],
            "known-hosts": test_host["MLCD_TEST_HOST_KNOWN_HOSTS"],
            "key-file": test_host["MLCD_TEST_HOST_KEY"],
            "port": random.randint(20000, 29999),  # a port on the test host
            "router": {"image": ROUTER_IMAGE},
            **env,
        }
        project = make_project({name: section})
        project.ports = {}  # nothing listens on this machine
        made.append(project)
        return project

    yield make
    for project in made:
        ids = _remote(test_host, "ps", "-aq", "--filter", f"label=mlcd.project={project.name}")
        if ids.split():
            _remote(test_host, "rm", "-f", *ids.split())
        for env in project.envs:
            _remote(test_host, "volume", "rm", "-f", f"mlcd-{project.name}-{env}-state")
            _remote(test_host, "network", "rm", f"mlcd-{project.name}-{env}")


def clone(project: Project, tmp_path: Path, label: str) -> Project:
    """Another checkout of the same project: same config and model registry, no state."""
    root = tmp_path / f"{project.name}-{label}"
    root.mkdir()
    other = Project(root=root, name=project.name, envs=project.envs)
    shutil.copy(project.config, other.config)
    text = other.config.read_text().replace("path: registry", f"path: {project.root}/registry")
    other.config.write_text(text)
    holdout = project.out / "train" / "holdout.csv"
    (other.out / "train").mkdir(parents=True)
    shutil.copy(holdout, other.out / "train" / "holdout.csv")
    return other


def address(project: Project, env: str = "staging") -> tuple[str, int]:
    section = project.envs[env]
    return section["host"].split("@", 1)[1], int(section["port"])


def remote_state(project: Project, env: str = "staging") -> dict[str, Any]:
    done = project.mlcd("status", env, "--format", "json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


class Client:
    """Steady requests to the environment's address in a thread; counts every status."""

    def __init__(self, host: str, port: int, rps: float = 50) -> None:
        self.host, self.port, self.rps = host, port, rps
        self.seen: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = json.dumps({"records": [ROW]}).encode()
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                self.seen[response.status] += 1
                if response.status == 200:
                    self.versions[json.loads(data)["model_version"]] += 1
            except OSError:
                self.seen[0] += 1
            finally:
                conn.close()
            self._stop.wait(1 / self.rps)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def _no_local_serving(project: Project) -> None:
    """mlcd's side ran no model container and no nginx."""
    assert project.containers() == []
    assert not (project.state / "staging" / "nginx").exists()


def test_canary_promotes_a_good_release_and_rolls_back_a_bad_one(
    remote_project: Any, standin_images: dict[str, str], tmp_path: Path
) -> None:
    project = remote_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 100},
            "analysis": {"max-error-rate": 0.01, "max-p99-latency-ms": 2000},
            "load-test": {"rps": 100},
        }
    )
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    result = project.result("deploy-staging")
    assert result["details"]["url"] == f"http://{host}:{port}"
    v2 = project.release(standin_images["clean"])
    started = time.monotonic()
    good = project.mlcd("deploy", "staging", "--release", v2)
    print(f"canary over ssh: {time.monotonic() - started:.1f}s")
    assert good.returncode == 0, good.stdout + good.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "promoted"
    judged = project.result("deploy-staging")["details"]["measurements"]
    assert judged
    assert judged[-1]["outcome"] == "pass"
    bad = project.release(standin_images["fail5"])  # 5 % errors
    done = project.mlcd("deploy", "staging", "--release", bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "rolled back"
    # the state lives on the server: a second checkout sees the same truth
    other = clone(project, tmp_path, "second")
    state = remote_state(other)
    assert state["stable"]["version"] == v2
    assert state["rollout"] is None
    assert state["last_analysis"]["outcome"] == "fail"
    events = [h["event"] for h in state["history"]]
    assert events.count("promoted") == 1
    assert "rolled back" in events
    text = other.mlcd("status", "staging")
    assert f"live: {v2}" in text.stdout
    assert "last analysis" in text.stdout
    assert "history:" in text.stdout
    with Client(host, port) as client:
        time.sleep(1.5)
    assert set(client.seen) == {200}
    assert set(client.versions) == {v2}
    _no_local_serving(project)
    _no_local_serving(other)
    # the models are not published on the server: only the router is
    published = _remote_ports(project)
    assert published == {f"mlcd-{project.name}-staging-router": f"0.0.0.0:{port}->{port}/tcp"}


def _raw(host: str, port: int, data: bytes, *, wait: float = 1.0) -> bytes:
    """Send raw bytes, read until the router closes or stays silent for `wait` seconds."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        sock.settimeout(wait)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def _json_error(response: bytes, status: int) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head[:200]
    assert b"Content-Type: application/json" in head, head
    message = json.loads(body.decode().strip())["error"]
    assert isinstance(message, str)
    return message


def test_the_routers_client_side_keeps_pipelines_and_answers_its_errors_as_json(
    remote_project: Any, standin_images: dict[str, str], test_host: dict[str, str]
) -> None:
    """The docker-host router is the local target's two nginx: the client side on the port
    (limits, JSON errors, pipelining), the routing side behind it on a socket."""
    project = remote_project({"strategy": "canary"})
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    base = f"mlcd-{project.name}-staging"
    roles = _remote(
        test_host, "ps", "--filter", f"label=mlcd.project={project.name}",
        "--format", '{{.Names}}\t{{.Label "mlcd.role"}}',
    )  # fmt: skip
    found = dict(line.split("\t", 1) for line in roles.splitlines() if "\t" in line)
    assert found[f"{base}-router"] == "router-front"
    assert found[f"{base}-routes"] == "router-routes"
    predict = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    assert "over the router's limit of 8m" in _json_error(
        _raw(host, port, predict + b"Content-Length: 9000000\r\n\r\n{}"), 413
    )
    long_uri = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert "request line" in _json_error(_raw(host, port, long_uri), 414)
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
    assert "header" in _json_error(_raw(host, port, big), 400)
    assert "could not parse" in _json_error(_raw(host, port, b"\x16\x03\x01 no http\r\n\r\n"), 400)
    # what the model server takes (64 KiB of headers) passes both nginx
    fits = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 60_000 + b"\r\n\r\n"
    assert _raw(host, port, fits).startswith(b"HTTP/1.1 200 ")
    body = json.dumps({"records": [ROW]}).encode()
    one = predict + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    count = 50
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(one * count)  # every request before reading any answer
        data = b""
        deadline = time.monotonic() + 30
        while data.count(b"HTTP/1.1 200 OK") < count and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == count
    assert data.count(b'"predictions"') == count
    # a router of an older mlcd (one container on the port, role `router`) is replaced by
    # the next command, which finds the router not running
    _remote(test_host, "rm", "-f", f"{base}-router", f"{base}-routes")
    old = _remote(
        test_host, "run", "-d", "--name", f"{base}-router", "--network", base,
        "--label", f"mlcd.project={project.name}", "--label", "mlcd.role=router",
        "--publish", f"{port}:{port}", "--user", "65534:65534",
        "-v", f"{base}-state:/mlcd", "--entrypoint", "nginx", ROUTER_IMAGE,
        "-p", "/mlcd/router/front/", "-c", "/mlcd/router/front/nginx.conf",
        "-e", "/mlcd/router/front/logs/error.log", "-g", "daemon off;",
    )  # fmt: skip
    assert old.strip()
    repaired = project.mlcd("status", "staging")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "the router was not running: restarted" in repaired.stdout + repaired.stderr
    roles = _remote(
        test_host, "ps", "--filter", f"label=mlcd.project={project.name}",
        "--format", '{{.Names}}\t{{.Label "mlcd.role"}}',
    )  # fmt: skip
    found = dict(line.split("\t", 1) for line in roles.splitlines() if "\t" in line)
    assert found[f"{base}-router"] == "router-front"
    assert found[f"{base}-routes"] == "router-routes"
    assert _raw(host, port, one).startswith(b"HTTP/1.1 200 ")
    # no arm answers: the routing side's error is JSON too, through the client side
    stable = remote_state(project)["stable"]["container"]
    _remote(test_host, "stop", "--time", "1", stable)
    answer = _raw(host, port, one, wait=10)
    status = int(answer.split(b" ", 2)[1])
    assert status in (502, 504), answer[:300]
    assert _json_error(answer, status)


def test_an_inference_post_a_killed_candidate_failed_is_retried_on_stable(
    remote_project: Any, standin_images: dict[str, str], test_host: dict[str, str]
) -> None:
    """The routing side's one retry of an idempotent inference POST, on the server: the
    candidate of a 50 % canary step is killed under steady traffic, and clients see only
    answers (the requests it failed went to stable)."""
    project = remote_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "3s", "min-requests": 100000},
            "analysis": {
                "max-p99-latency-ms": 5000,
                "inconclusive-limit": 50,
                "accept-slow-plan": True,
            },
        }
    )
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    deploy = project.spawn("deploy", "staging", "--release", v2)
    try:

        def canary_up() -> bool:
            if deploy.poll() is not None:
                raise AssertionError(deploy.err_file.read_text())
            return "step 1 at 50%" in project.mlcd("status", "staging").stdout

        wait_for(canary_up, 120, "the canary step at 50 %")
        with Client(host, port, rps=40) as client:
            time.sleep(2)
            assert set(client.versions) == {v1, v2}, client.versions  # the split is live
            ids = _remote(
                test_host, "ps", "-q", "--filter", f"label=mlcd.project={project.name}",
                "--filter", f"label=mlcd.version={v2}",
            ).split()  # fmt: skip
            assert len(ids) == 1
            _remote(test_host, "kill", ids[0])
            time.sleep(4)
        print("clients during the kill:", dict(client.seen))
        assert set(client.seen) == {200}, client.seen
        out, err = deploy.communicate(timeout=180)
        assert deploy.returncode == 1, out + err
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert remote_state(project)["stable"]["version"] == v1


def _remote_ports(project: Project) -> dict[str, str]:
    host = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    out = _remote(
        host,
        "ps",
        "--filter",
        f"label=mlcd.project={project.name}",
        "--format",
        "{{.Names}}\t{{.Ports}}",
    )
    found = {}
    for line in out.splitlines():
        name, _, ports = line.partition("\t")
        published = [p.strip() for p in ports.split(",") if "->" in p]
        if published:
            found[name] = published[0]
    return found


def test_blue_green_switch_and_rollback_under_200_rps_lose_nothing(
    remote_project: Any, standin_images: dict[str, str], tmp_path: Path
) -> None:
    project = remote_project(
        {
            "strategy": "blue-green",
            "blue-green": {
                "preview-duration": "2s",
                "scale-down-delay": "2s",
                "interval": "1s",
                "min-requests": 20,
                "rps": 40,
            },
            "analysis": {"max-p99-latency-ms": 2000},
        }
    )
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    v2 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    script = tmp_path / "post.lua"
    # 8 connections, 40 ms apart: about 200 requests a second with room for the network hop
    script.write_text(WRK_SCRIPT.replace("return 18", "return 36"))
    wrk = subprocess.Popen(
        ["wrk", "--threads", "2", "--connections", "8", "--duration", "40s", "--timeout", "5s",
         "--script", str(script), f"http://{host}:{port}/predict"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        started = time.monotonic()
        switched = project.mlcd("deploy", "staging", "--release", v2)
        print(f"blue/green over ssh: {time.monotonic() - started:.1f}s")
        assert switched.returncode == 0, switched.stdout + switched.stderr
        time.sleep(1)
        back = project.mlcd("rollback", "staging")
        assert back.returncode == 0, back.stdout + back.stderr
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=60)
    finally:
        if wrk.poll() is None:
            wrk.kill()
    figures = parse_wrk(out)
    print(out, figures)
    assert figures["non_2xx"] == 0
    assert figures["socket_errors"] == 0
    # the load was real: about 200/s alone, under half that while other tests share the
    # machine (CI runs two lanes at once); what is asserted is that nothing was lost
    assert figures["rps"] >= 50
    state = remote_state(project)
    assert state["stable"]["version"] == v1
    events = [h["event"] for h in state["history"]]
    assert "promoted" in events
    assert "rolled back" in events
    _no_local_serving(project)


def test_shadow_is_judged_on_predictions(
    remote_project: Any, standin_images: dict[str, str]
) -> None:
    project = remote_project(
        {
            "strategy": "shadow",
            "shadow": {
                "duration": "2s",
                "interval": "2s",
                "min-requests": 100,
                "max-disagreement": 0.05,
            },
            "analysis": {"max-p99-latency-ms": 2000},
            "load-test": {"rps": 100},
        }
    )
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    flip = project.release(standin_images["flip"])  # 30 % of its predictions differ
    done = project.mlcd("deploy", "staging", "--release", flip)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    assert "shadow blocked" in result["summary"]
    assert any("disagree" in json.dumps(m).lower() for m in result["details"]["measurements"])
    same = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "staging", "--release", same)
    assert done.returncode == 0, done.stdout + done.stderr
    assert remote_state(project)["stable"]["version"] == same
    _no_local_serving(project)


def test_killed_deploy_is_reconciled_from_another_clone_and_a_second_deploy_is_refused(
    remote_project: Any, standin_images: dict[str, str], tmp_path: Path
) -> None:
    project = remote_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "3s", "min-requests": 100000},
            "analysis": {
                "max-p99-latency-ms": 2000,
                "inconclusive-limit": 50,
                "accept-slow-plan": True,
            },
        }
    )
    host, port = address(project)
    other = clone(project, tmp_path, "other")
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    with Client(host, port, rps=40) as client:
        first = project.spawn("deploy", "staging", "--release", v2)
        try:

            def canary_up() -> bool:
                if first.poll() is not None:
                    raise AssertionError(first.err_file.read_text())
                return "step 1 at 50%" in other.mlcd("status", "staging").stdout

            wait_for(canary_up, 120, "the first deploy's canary step")
            running = project.result("deploy-staging")  # the first deploy's, from before
            second = other.mlcd("deploy", "staging", "--release", v2)
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"locked by pid {first.pid}" in second.stderr + second.stdout
            refused = other.result("deploy-staging-refused")
            assert refused["status"] == "fail"
            assert not (other.out / "deploy-staging").exists()
            assert project.result("deploy-staging") == running
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        time.sleep(1)
        status = other.mlcd("status", "staging")
        assert status.returncode == 0, status.stderr
        assert "interrupted" in status.stdout
        time.sleep(1)
    assert set(client.seen) == {200}, client.seen  # stable served throughout
    state = remote_state(other)
    assert state["rollout"] is None
    assert state["stable"]["version"] == v1
    assert any(h["event"] == "recovered" for h in state["history"])
    with Client(host, port) as after:
        time.sleep(1.5)
    assert set(after.versions) == {v1}
    assert len(_remote_ports(project)) == 1
    again = other.mlcd("deploy", "staging", "--release", v1)
    assert again.returncode == 0, again.stderr
    assert "already live" in again.stdout


def test_a_wrong_host_key_is_refused(remote_project: Any, tmp_path: Path) -> None:
    project = remote_project({"strategy": "canary"})
    host, _ = address(project)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    other_key = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    (tmp_path / "known_hosts").write_text(f"{host} {other_key}\n")
    text = project.config.read_text()
    original = project.envs["staging"]["known-hosts"]
    project.config.write_text(text.replace(original, str(tmp_path / "known_hosts")))
    done = project.mlcd("status", "staging")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Host key verification failed" in done.stderr
    assert "never skip" in done.stderr


def test_the_environment_comes_back_after_the_engine_restarts(
    remote_project: Any, standin_images: dict[str, str], test_host: dict[str, str]
) -> None:
    """The test host's own dockerd is restarted (never the machine's main one)."""
    project = remote_project({"strategy": "canary"})
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
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
    assert setup.returncode == 0, setup.stdout + setup.stderr
    started = time.monotonic()

    def answers() -> bool:
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            body = json.dumps({"records": [ROW]}).encode()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    wait_for(answers, 30, "the environment to answer again, with no mlcd command")
    print(f"back {time.monotonic() - started:.1f}s after the engine answered")
    state = remote_state(project)
    assert state["stable"]["version"] == v1
    assert state["notes"] == []  # nothing needed repairing

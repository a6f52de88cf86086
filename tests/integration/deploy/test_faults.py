"""Faults and refusals leave the record intact (issue 22, docs/deploy.md "Recovery"):

- a deploy SIGKILLed at each step boundary of canary, blue/green and shadow (the kill points
  of `mlcd.rollout.killpoints`, not a guessed delay): after the next command, state,
  containers and router agree, and nothing the killed deploy started is left;
- refused commands (`--release ''`, an unknown release) write `deploy-<env>-refused/`
  beside the environment's record, a model version is resolved to its release, and
  `mlcd abort` during a running deploy stops it: it rolls back and records `interrupted`;
- a stable container that dies mid-canary is a fault of its own: restarted, all traffic
  held on it, the rollout rolled back with "stable is down".
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from typing import Any

from mlcd.rollout.killpoints import KILL_AT
from tests.integration.deploy.conftest import Project
from tests.integration.deploy.helpers import ROW, post, wait_for
from tests.integration.deploy.test_docker_host import (  # noqa: F401 - fixtures
    remote_project,
    test_host,
)

BODY = json.dumps({"records": [ROW]}).encode()


def _router(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/_mlcd/router")
        data: dict[str, Any] = json.loads(conn.getresponse().read())
        return data
    finally:
        conn.close()


def _versions(port: int, n: int = 10) -> set[str]:
    seen = set()
    for _ in range(n):
        status, data, _ = post(port, BODY)
        seen.add(json.loads(data)["model_version"] if status == 200 else f"HTTP {status}")
    return seen


def _agree(project: Project, env: str, version: str, extra: int = 0) -> dict[str, Any]:
    """State, containers and router say the same: `version` is stable and serves all
    traffic, no rollout, and no container but stable's (and `extra` retired ones)."""
    state = project.state_json(env)
    assert state["rollout"] is None, state["rollout"]
    stable = state["stable"]
    assert stable["version"] == version
    kept = {r["arm"]["container"] for r in state["retired"]}
    assert set(project.containers()) == {stable["container"], *kept}
    assert len(kept) == extra, kept
    routes = _router(project.ports[env])
    assert routes["mode"] == "single", routes
    assert routes["routes"] == f"all to :{stable['port']}", routes
    assert _versions(project.ports[env]) == {version}
    return state


def _killed_at(project: Project, point: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        project.argv(*args),
        capture_output=True,
        text=True,
        env={**project.env(), KILL_AT: point},
        timeout=300,
        check=False,
    )


def test_a_deploy_killed_at_every_step_boundary_is_recovered_with_nothing_left(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "1s", "min-requests": 10},
                "blue-green": {
                    "preview-duration": "1s",
                    "interval": "1s",
                    "min-requests": 10,
                    "scale-down-delay": "300s",
                    "rps": 20,
                },
                "shadow": {"duration": "1s", "interval": "1s", "min-requests": 10},
                "analysis": {"max-p99-latency-ms": 2000},
            }
        }
    )
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    v2 = project.release(standin_images["clean"])
    cases = [
        ("canary", "before-create"),  # named in the state, no container yet
        ("canary", "after-create"),  # the container exists, not ready (the orphan of #22)
        ("canary", "candidate-ready"),
        ("canary", "before-route"),  # the split about to be applied
        ("canary", "after-route"),  # the split applied, not yet in the state
        ("blue-green", "after-create"),
        ("blue-green", "candidate-ready"),
        ("shadow", "before-route"),
        ("shadow", "after-route"),  # the mirror applied
    ]
    for strategy, point in cases:
        killed = _killed_at(
            project, point, "deploy", "staging", "--release", v2, "--strategy", strategy
        )
        assert killed.returncode == -9, (strategy, point, killed.stdout + killed.stderr)
        status = project.mlcd("status", "staging", "--format", "json")
        assert status.returncode == 0, status.stderr
        notes = json.loads(status.stdout)["notes"]
        assert any("interrupted" in n for n in notes), (strategy, point, notes)
        if point != "before-create":
            assert any("removed its candidate container" in n for n in notes), (point, notes)
        _agree(project, "staging", v1)
    # killed in blue/green's post-switch watch: the new release stays live, the old is kept
    killed = _killed_at(
        project, "in-watch", "deploy", "staging", "--release", v2, "--strategy", "blue-green"
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    status = project.mlcd("status", "staging", "--format", "json")
    assert status.returncode == 0, status.stderr
    _agree(project, "staging", v2, extra=1)


def test_a_plan_that_cannot_decide_is_refused_beside_the_record(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    """The judge's plan refuses a canary that could not decide within max-intervals before
    anything moves: exit 2 recorded in deploy-<env>-refused/, the last rollout's record and
    the environment untouched."""
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 100000},
                "analysis": {"max-p99-latency-ms": 2000, "max-intervals": 5},
                "load-test": {"rps": 20},
            }
        }
    )
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    record = project.result("deploy-staging")
    v2 = project.release(standin_images["clean"])
    refused = project.mlcd("deploy", "staging", "--release", v2)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot decide within max-intervals 5" in refused.stderr, refused.stderr
    assert project.result("deploy-staging") == record
    assert project.result("deploy-staging-refused")["status"] == "error"
    _agree(project, "staging", v1)


def test_refused_commands_leave_the_record_and_abort_stops_a_running_deploy(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                # long enough that the deploy is still analysing when abort comes
                "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 100000},
                "analysis": {
                    "max-p99-latency-ms": 2000,
                    "max-intervals": 200,
                    "accept-slow-plan": True,
                },
            }
        }
    )
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    record = project.result("deploy-staging")
    history = len(project.state_json("staging")["history"])
    for bad, words in (("9.9.9", "no release 9.9.9"), ("", "--release is empty")):
        refused = project.mlcd("deploy", "staging", "--release", bad)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert words in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert project.result("deploy-staging") == record  # the evidence stays
        assert project.result("deploy-staging-refused")["status"] == "error"
        assert len(project.state_json("staging")["history"]) == history  # nothing moved
    # a model version names its release
    model_version = project.registry.versions()[0].version
    same = project.mlcd("deploy", "staging", "--release", model_version)
    assert same.returncode == 0, same.stdout + same.stderr
    assert project.result("deploy-staging")["details"]["version"] == v1
    assert project.result("deploy-staging")["details"]["outcome"] == "already live"
    # abort during a running deploy: it is stopped, rolls back and records `interrupted`
    v2 = project.release(standin_images["clean"])
    running = project.spawn("deploy", "staging", "--release", v2)
    try:

        def analysing() -> bool:
            if running.poll() is not None:
                raise AssertionError(running.err_file.read_text())
            rollout = project.state_json("staging").get("rollout") or {}
            return bool(rollout.get("weight"))

        wait_for(analysing, 120, "the canary step")
        abort = project.mlcd("abort", "staging")
        assert abort.returncode == 0, abort.stdout + abort.stderr
        assert running.wait(60) == 130
    finally:
        if running.poll() is None:
            running.kill()
    assert "stopped the running deploy" in project.result("abort-staging")["reasons"][0]
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "interrupted"
    assert result["details"]["signal"] == "SIGTERM"
    assert "removed" in result["summary"], result["summary"]
    assert result["details"]["version"] == v2
    _agree(project, "staging", v1)


def test_a_dead_stable_is_restarted_and_holds_the_traffic(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "3s", "min-requests": 100000},
                "analysis": {
                    "max-p99-latency-ms": 2000,
                    "max-intervals": 200,
                    "accept-slow-plan": True,
                },
                "load-test": {"rps": 20},
            }
        }
    )
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    stable = project.state_json("staging")["stable"]["container"]
    v2 = project.release(standin_images["clean"])
    running = project.spawn("deploy", "staging", "--release", v2)
    try:

        def analysing() -> bool:
            if running.poll() is not None:
                raise AssertionError(running.err_file.read_text())
            rollout = project.state_json("staging").get("rollout") or {}
            return bool(rollout.get("weight"))

        wait_for(analysing, 120, "the canary step")
        subprocess.run(["docker", "kill", stable], capture_output=True, check=True, timeout=60)
        killed = time.monotonic()
        assert running.wait(120) == 1
        took = time.monotonic() - killed
    finally:
        if running.poll() is None:
            running.kill()
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    assert "stable is down" in result["summary"], result["summary"]
    print(f"a dead stable rolled back {took:.1f}s after the kill")
    state = _agree(project, "staging", v1)
    assert state["stable"]["container"] == stable  # restarted, not replaced


def test_a_dead_stable_on_a_docker_host_is_restarted_and_holds_the_traffic(
    remote_project: Any,  # noqa: F811 - the fixture
    standin_images: dict[str, str],
    test_host: dict[str, str],  # noqa: F811 - the fixture
) -> None:
    project = remote_project(
        {
            "strategy": "canary",
            "canary": {"steps": [50, 100], "interval": "3s", "min-requests": 100000},
            "analysis": {
                "max-p99-latency-ms": 2000,
                "max-intervals": 200,
                "accept-slow-plan": True,
            },
            "load-test": {"rps": 20},
        }
    )
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    stable = json.loads(project.mlcd("status", "staging", "--format", "json").stdout)["stable"]
    v2 = project.release(standin_images["clean"])
    running = project.spawn("deploy", "staging", "--release", v2, "--verbose")
    try:
        wait_for(lambda: "canary step" in running.err_file.read_text(), 180, "the canary step")
        subprocess.run(
            ["docker", "kill", stable["container"]],
            capture_output=True,
            check=True,
            timeout=60,
            env={**os.environ, "DOCKER_HOST": test_host["MLCD_TEST_HOST_DOCKER"]},
        )
        code = running.wait(180)
    finally:
        if running.poll() is None:
            running.kill()
    assert code == 1, running.err_file.read_text()[-3000:]
    result = project.result("deploy-staging")
    assert "stable is down" in result["summary"], result["summary"]
    status = json.loads(project.mlcd("status", "staging", "--format", "json").stdout)
    assert status["rollout"] is None
    assert status["stable"]["container"] == stable["container"]
    assert status["notes"] == []  # nothing left to recover

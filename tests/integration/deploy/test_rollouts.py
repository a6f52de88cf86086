"""Pauses, kills, locks and gates of `mlcd deploy` on the local target (Docker + nginx)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from tests.integration.deploy.helpers import hammer, wait_for


def _canary_env(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "strategy": "canary",
        "canary": {"steps": [50, 100], "interval": "1s", "min-requests": 100},
        "analysis": {"max-p99-latency-ms": 2000, "inconclusive-limit": 1},
    }
    env.update(over)
    return env


def test_too_few_requests_is_inconclusive_and_pauses(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    # no load test and no clients: every interval has fewer than min-requests
    project = make_project({"staging": _canary_env()})
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "staging", "--release", v2)
    assert done.returncode == 1
    assert "paused" in done.stdout
    assert "mlcd promote staging" in done.stdout
    result = project.result("deploy-staging")
    outcomes = [m["outcome"] for m in result["details"]["measurements"]]
    assert outcomes == ["inconclusive", "inconclusive"]  # inconclusive-limit 1 → paused at 2
    assert "pass" not in outcomes
    state = project.state_json("staging")
    assert state["stable"]["version"] == v1  # never promoted
    assert state["rollout"]["phase"] == "paused"
    # a second deploy is refused while a decision is pending
    again = project.mlcd("deploy", "staging", "--release", v2)
    assert again.returncode == 1
    assert "paused for a decision" in again.stderr + again.stdout
    status = project.mlcd("status", "staging")
    assert "paused" in status.stdout
    assert "waiting for" in status.stdout
    # abort: stable serves all traffic again
    aborted = project.mlcd("abort", "staging")
    assert aborted.returncode == 0, aborted.stderr
    state = project.state_json("staging")
    assert state["rollout"] is None
    assert state["stable"]["version"] == v1
    assert hammer(project.ports["staging"], 30) == {200: 30}
    assert len(project.containers()) == 1


def test_killed_canary_container_leads_to_rollback(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": _canary_env(
                canary={"steps": [50, 100], "interval": "2s", "min-requests": 100000},
                analysis={
                    "max-p99-latency-ms": 2000,
                    "inconclusive-limit": 50,
                    "accept-slow-plan": True,
                },
                **{"load-test": {"rps": 40}},
            )
        }
    )
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    proc = project.spawn("deploy", "staging", "--release", v2)
    try:

        def canary_up() -> bool:
            state = project.state_json("staging")
            return bool(state.get("rollout") and state["rollout"].get("weight"))

        wait_for(canary_up, 60, "the canary step")
        candidate = project.state_json("staging")["rollout"]["candidate"]["container"]
        subprocess.run(["docker", "kill", candidate], check=True, capture_output=True)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    assert "not running" in json.dumps(result["details"]["measurements"][-1])
    state = project.state_json("staging")
    assert state["stable"]["version"] == v1
    assert state["rollout"] is None
    assert hammer(project.ports["staging"], 100) == {200: 100}


def test_one_rollout_at_a_time_and_recovery_after_sigkill(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": _canary_env(
                canary={"steps": [50, 100], "interval": "3s", "min-requests": 100000},
                analysis={
                    "max-p99-latency-ms": 2000,
                    "inconclusive-limit": 50,
                    "accept-slow-plan": True,
                },
            )
        }
    )
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    first = project.spawn("deploy", "staging", "--release", v2)
    try:

        def canary_up() -> bool:
            state = project.state_json("staging")
            return bool(state.get("rollout") and state["rollout"].get("weight"))

        wait_for(canary_up, 60, "the first deploy's canary step")
        second = project.mlcd("deploy", "staging", "--release", v2)
        assert second.returncode == 1
        assert f"locked by pid {first.pid}" in second.stderr
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    # the state file still says "rolling out", with half the traffic on the canary
    assert project.state_json("staging")["rollout"]["phase"] == "progressing"
    status = project.mlcd("status", "staging")
    assert status.returncode == 0, status.stderr
    assert "interrupted" in status.stdout
    state = project.state_json("staging")
    assert state["rollout"] is None
    assert state["stable"]["version"] == v1
    assert state["history"][-1]["event"] == "recovered"
    assert len(project.containers()) == 1
    assert hammer(project.ports["staging"], 60) == {200: 60}
    # and the environment takes commands again (the dead holder's lock is taken over)
    third = project.mlcd("deploy", "staging", "--release", v1)
    assert third.returncode == 0, third.stderr
    assert "already live" in third.stdout


def test_production_requires_staging(make_project: Any, standin_images: dict[str, str]) -> None:
    project = make_project(
        {
            "staging": {"strategy": "canary"},
            "production": {"strategy": "blue-green", "requires": ["staging"]},
        }
    )
    version = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "production", "--release", version)
    assert done.returncode == 1
    assert "requires staging" in done.stdout
    assert "never been live and healthy in staging" in done.stdout
    # refused before anything moved: beside the environment's record, never over it
    result = project.result("deploy-production-refused")
    assert result["status"] == "fail"
    assert result["details"]["outcome"] == "refused by gates"
    assert not (project.out / "deploy-production").exists()
    assert project.containers() == []
    # a release whose scan failed is refused too, with its reason
    bad = project.release(standin_images["clean"], scan="fail")
    done = project.mlcd("deploy", "staging", "--release", bad)
    assert done.returncode == 1
    assert "scan of" in done.stdout
    assert "failed" in done.stdout

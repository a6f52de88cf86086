"""Who sees which version on the local router, under load: a header forces an arm, and a
sticky key keeps each user on one arm from the first canary step to the promotion."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.deploy import sticky


def test_sticky_users_and_forced_testers_through_a_canary(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {
                    "steps": [25, 60, 100],
                    "interval": "1s",
                    "min-requests": 100,
                    "min-intervals": 3,
                },
                # wide tolerances: the test is about who sees which arm, not the judge
                "analysis": {
                    "max-p99-latency-ms": 2000,
                    "max-error-rate-increase": 0.05,
                    "quantiles": {"p50": 2.0},
                    "inconclusive-limit": 40,
                },
                "load-test": {"rps": 150},  # no sticky key: split by weight
                "routing": {"sticky-key": "X-User-Id"},
            }
        }
    )
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])
    started = time.monotonic()
    with sticky.Users("127.0.0.1", project.ports["staging"]) as users:
        done = project.mlcd("deploy", "staging", "--release", v2)
    print(f"canary with sticky users: {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert users.errors == 0
    history = project.state_json("staging")["history"]
    figures = sticky.check(users.seen, history, v1, v2, "promoted")
    print(figures)
    # after the promotion everyone is on the new version
    assert users.seen[-1].version == v2

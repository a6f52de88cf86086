"""Who sees which version on a docker-host's router (the router container on the test host),
under load: sticky users stay on one arm from the first canary step to the rollback, and
testers' forced header reaches the arm it names."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.deploy import sticky
from tests.integration.deploy.test_docker_host import (  # noqa: F401 - fixtures
    address,
    remote_project,
    remote_state,
    test_host,
)


def test_sticky_users_stay_on_one_arm_until_the_rollback(
    remote_project: Any,  # noqa: F811 - the fixture imported above
    standin_images: dict[str, str],
) -> None:
    project = remote_project(
        {
            "strategy": "canary",
            "canary": {
                "steps": [20, 60, 100],
                "interval": "2s",
                "min-requests": 100,
                "min-intervals": 2,
            },
            "analysis": {
                "max-error-rate": 0.01,
                "max-p99-latency-ms": 2000,
                "max-error-rate-increase": 0.02,
                "quantiles": {"p50": 2.0},
            },
            "load-test": {"rps": 100},
            "routing": {"sticky-key": "X-User-Id"},
        }
    )
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    bad = project.release(standin_images["fail5"])  # 5 % errors: rolled back
    started = time.monotonic()
    with sticky.Users(host, port) as users:
        done = project.mlcd("deploy", "staging", "--release", bad)
        time.sleep(1.0)  # a moment on stable after the rollback
    print(f"canary over ssh with sticky users: {time.monotonic() - started:.1f}s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "rolled back"
    history = remote_state(project)["history"]
    figures = sticky.check(users.seen, history, v1, bad, "rolled back")
    print(figures)
    # the stand-in's own 5 % errors are answered 500 (not counted as seen); nothing else failed
    assert users.errors < 0.2 * len(users.seen)
    assert users.seen[-1].version == v1

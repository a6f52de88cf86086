"""Who sees which version on a docker-host's router (the router containers on the test host),
under load: some 300 sticky users, each sending a row of their own, stay on one version from
the first canary step to the promotion of a healthy candidate, and then to the rollback of a
failing one; testers' forced header reaches the arm it names throughout."""

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


def test_sticky_users_stay_on_one_version_to_the_promotion_and_the_rollback(
    remote_project: Any,  # noqa: F811 - the fixture imported above
    standin_images: dict[str, str],
) -> None:
    project = remote_project(
        {
            "strategy": "canary",
            # strict stickiness: one cohort step at 20 % (60 % is not run), then the promotion
            "canary": {
                "steps": [20, 60, 100],
                "interval": "2s",
                "min-requests": 100,
                "min-intervals": 4,
            },
            "analysis": {
                "max-error-rate": 0.01,
                "max-p99-latency-ms": 2000,
                "max-error-rate-increase": 0.02,
                "quantiles": {"p50": 2.0},
                "inconclusive-limit": 40,
            },
            "routing": {"sticky-key": "X-User-Id"},
        }
    )
    host, port = address(project)
    v1 = project.release(standin_images["clean"])
    first = project.mlcd("deploy", "staging", "--release", v1)
    assert first.returncode == 0, first.stdout + first.stderr
    # a healthy candidate (the same model): promoted, every user on one version throughout
    v2 = project.release(standin_images["clean"])
    started = time.monotonic()
    with sticky.Users(host, port) as users:
        done = project.mlcd("deploy", "staging", "--release", v2)
    print(f"sticky canary over ssh, promoted: {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert users.errors == 0
    history = remote_state(project)["history"]
    print(sticky.check(users.seen, history, v1, v2, "promoted"))
    last = project.result("deploy-staging")["details"]["measurements"][-1]
    assert last["metrics"]["classes_psi"] == 0.0, last  # same inputs, same model
    # a failing candidate (5 % errors): rolled back, every user on one version until then
    bad = project.release(standin_images["fail5"])
    started = time.monotonic()
    with sticky.Users(host, port) as users:
        done = project.mlcd("deploy", "staging", "--release", bad)
        time.sleep(1.0)  # a moment on stable after the rollback
    print(f"sticky canary over ssh, rolled back: {time.monotonic() - started:.1f}s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert project.result("deploy-staging")["details"]["outcome"] == "rolled back"
    history = remote_state(project)["history"]
    print(sticky.check(users.seen, history, v2, bad, "rolled back", min_users=100, min_visits=2))
    # the stand-in's own 5 % errors are answered 500 (not counted as seen); nothing else failed
    assert users.errors < 0.2 * len(users.seen)
    assert users.seen[-1].version == v2

"""Who sees which version on the local router, under load: a header forces an arm, and a
sticky key keeps each of some 300 users (each sending a row of their own) on one version from
the first canary step to the promotion or the rollback. The judge compares the models'
predictions on the same inputs (the canary's requests copied to stable), so a healthy
candidate is promoted although its cohort's input mix is not stable's, and a candidate whose
image serves another model than the one evaluated is still rolled back on predictions."""

from __future__ import annotations

import time
from typing import Any

from mlcd.rollout.judge import psi_estimate
from tests.integration.deploy import sticky
from tests.integration.deploy.standin_server import SCORE_BUCKETS, _predict
from tests.integration.deploy.test_served_model import _profile

CANARY = {
    "strategy": "canary",
    # strict stickiness: one cohort step at 20 %, then the promotion (60 % is not run)
    "canary": {"steps": [20, 60, 100], "interval": "1s", "min-requests": 100, "min-intervals": 8},
    # wide latency tolerances: the machine is shared; predictions are judged as configured
    "analysis": {
        "max-p99-latency-ms": 2000,
        "max-error-rate-increase": 0.05,
        "quantiles": {"p50": 2.0},
        "inconclusive-limit": 40,
    },
    "routing": {"sticky-key": "X-User-Id"},
}


def _unlike(users: sticky.Users, figures: dict[str, Any], candidate: str) -> None:
    """For the report: the bias-corrected PSI between the arms' own user mixes (what the judge
    compared before the canary's requests were copied to stable), from what the users saw:
    predicted classes, and scores over the stand-in's ten score buckets."""
    classes = {True: [0.0, 0.0], False: [0.0, 0.0]}
    scores = {True: [0.0] * 11, False: [0.0] * 11}
    for s in users.seen:
        if s.who.startswith("user-"):
            label, score = _predict(users.row(s.who))
            classes[s.version == candidate][label] += 1
            cell = next((i for i, b in enumerate(SCORE_BUCKETS) if score <= b), 10)
            scores[s.version == candidate][cell] += 1
    for name, counts in (("classes", classes), ("scores", scores)):
        shift = psi_estimate(counts[False], counts[True])
        figures[f"unlike_{name}_psi"] = round(shift.corrected, 4)


def test_sticky_users_and_forced_testers_through_a_promoted_canary(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project({"staging": CANARY})
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    v2 = project.release(standin_images["clean"])  # the same model: a healthy candidate
    started = time.monotonic()
    with sticky.Users("127.0.0.1", project.ports["staging"]) as users:
        done = project.mlcd("deploy", "staging", "--release", v2)
    print(f"sticky canary, promoted: {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert users.errors == 0
    history = project.state_json("staging")["history"]
    figures = sticky.check(users.seen, history, v1, v2, "promoted")
    _unlike(users, figures, v2)
    details = project.result("deploy-staging")["details"]
    # no load test, no expected-rps: the plan measured the users' traffic on stable first
    assert details["plan"]["source"] == "stable's measured rate", details["plan"]
    assert details["plan"]["rps"] > 20
    assert [s["step"] for s in details["plan"]["steps"]] == ["20%"]  # one cohort step
    assert "one cohort of 20% of the X-User-Id values" in details["plan"]["sticky"]
    print(details["plan"])
    last = details["measurements"][-1]
    # predictions were compared, on the same inputs: two copies of one model agree exactly
    assert last["metrics"]["classes_psi"] == 0.0, last
    figures["alike_class_psi"] = last["metrics"]["classes_psi"]
    print(figures)
    # after the promotion everyone is on the new version
    assert users.seen[-1].version == v2


def test_a_sticky_canary_serving_another_model_is_rolled_back(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project({"staging": CANARY})
    v1 = project.release(standin_images["clean"])
    assert project.mlcd("deploy", "staging", "--release", v1).returncode == 0
    shift = {
        "rows": 120,
        "candidate": _profile(threshold=10.0),  # what evaluation measured: another model
        "champion": _profile(),
        "champion_version": "v1",
        "shift": {},
    }
    # the image serves the champion's rule, not the evaluated model
    other = project.release(standin_images["clean"], verdict_extra={"prediction_shift": shift})
    started = time.monotonic()
    with sticky.Users("127.0.0.1", project.ports["staging"]) as users:
        done = project.mlcd("deploy", "staging", "--release", other)
        time.sleep(1.0)  # a moment on stable after the rollback
    print(f"sticky canary, rolled back: {time.monotonic() - started:.1f}s")
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    why = " ".join(result["details"]["measurements"][-1]["reasons"])
    print(why)
    assert "serving skew" in why
    history = project.state_json("staging")["history"]
    # rolled back at its first look: a short window, some users once
    print(sticky.check(users.seen, history, v1, other, "rolled back", min_users=20, min_visits=1))
    assert users.seen[-1].version == v1

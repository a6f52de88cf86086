"""Issue 21: a canary whose image serves another model than the one evaluated is rolled back on
its predictions, even though the judge now allows the shift evaluation measured.

The release's verdict carries evaluation's `prediction_shift`: a candidate whose rule has
another threshold than the champion's (most held-out rows in class 1, where the stand-in puts
about half), a large intended change. Its image, though, serves the stand-in's own rule, like
stable: against stable nothing moved beyond what evaluation measured (that check alone would
pass it), but its live predictions are far from its own held-out ones, so it is rolled back as
serving skew.
"""

from __future__ import annotations

import math
from typing import Any

from tests.integration.deploy.conftest import holdout_rows_for_tests
from tests.integration.deploy.standin_server import SCORE_BUCKETS, _predict


def _profile(*, threshold: float | None = None) -> dict[str, Any]:
    """The stand-in's predictions on the held-out rows (with another threshold on its feature:
    another model), as evaluation/shift.py writes them."""
    labels: dict[str, int] = {}
    scores: list[float] = []
    for row in holdout_rows_for_tests():
        label, score = _predict(row)
        if threshold is not None:
            first = float(next(iter(row.values())))
            score = 1.0 / (1.0 + math.exp(-(first - threshold)))
            label = int(score >= 0.5)
        labels[str(label)] = labels.get(str(label), 0) + 1
        scores.append(score)
    buckets: list[list[Any]] = [[b, sum(1 for s in scores if s <= b)] for b in SCORE_BUCKETS]
    buckets.append(["+Inf", len(scores)])
    return {"classes": labels, "scores": buckets}


def test_a_canary_serving_another_model_is_rolled_back(
    make_project: Any, standin_images: dict[str, str]
) -> None:
    project = make_project(
        {
            "staging": {
                "strategy": "canary",
                "canary": {"steps": [50, 100], "interval": "2s", "min-requests": 150},
                "analysis": {"inconclusive-limit": 20},
                "load-test": {"rps": 150},
            }
        }
    )
    stable = project.release(standin_images["clean"])
    done = project.mlcd("deploy", "staging", "--release", stable)
    assert done.returncode == 0, done.stderr
    champion, evaluated = _profile(), _profile(threshold=10.0)
    assert min(champion["classes"].values()) >= 5  # both classes occur in the held-out rows
    assert champion["classes"] != evaluated["classes"]
    shift = {
        "rows": sum(evaluated["classes"].values()),
        "candidate": evaluated,
        "champion": champion,
        "champion_version": "v1",
        "shift": {},  # the judge measures it from the two profiles
    }
    # the image serves the champion's rule, not the evaluated (reversed) model
    other = project.release(standin_images["clean"], verdict_extra={"prediction_shift": shift})
    done = project.mlcd("deploy", "staging", "--release", other)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    print([(m["outcome"], m["reasons"][:2]) for m in result["details"]["measurements"][-3:]])
    assert result["details"]["outcome"] == "rolled back"
    last = result["details"]["measurements"][-1]
    assert last["outcome"] == "fail"
    why = " ".join(last["reasons"])
    print(why)
    assert "serving skew" in why
    assert "beyond what evaluation measured" not in why
    # the judge used evaluation's measurement (it says what it expected)
    assert any(
        k.endswith("_psi_expected") and math.isfinite(float(v))
        for k, v in last["metrics"].items()
        if v is not None
    )
    assert project.state_json("staging")["stable"]["version"] == stable

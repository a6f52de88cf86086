"""Issue 21: a canary whose image serves another model than the one evaluated is rolled back on
its predictions, even though the judge now allows the shift evaluation measured.

The release's verdict carries evaluation's `prediction_shift` for a model that predicts like
stable (the stand-in's own rule, on the held-out rows the load test sends); its image is the
stand-in that flips 30 % of its answers. The canary departs from what evaluation measured,
against stable and against its own held-out predictions, and is rolled back.
"""

from __future__ import annotations

import math
from typing import Any

from tests.integration.deploy.conftest import holdout_rows_for_tests
from tests.integration.deploy.standin_server import SCORE_BUCKETS, _predict


def _profile() -> dict[str, Any]:
    """The stand-in's predictions on the held-out rows, as evaluation/shift.py writes them."""
    labels: dict[str, int] = {}
    scores: list[float] = []
    for row in holdout_rows_for_tests():
        label, score = _predict(row)
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
    evaluated = _profile()
    assert min(evaluated["classes"].values()) >= 5  # both classes occur in the held-out rows
    shift = {
        "rows": sum(evaluated["classes"].values()),
        "candidate": evaluated,
        "champion": evaluated,
        "champion_version": "v1",
        "shift": {"classes": 0.0, "scores": 0.0},
    }
    other = project.release(standin_images["flip"], verdict_extra={"prediction_shift": shift})
    done = project.mlcd("deploy", "staging", "--release", other)
    assert done.returncode == 1, done.stdout + done.stderr
    result = project.result("deploy-staging")
    assert result["details"]["outcome"] == "rolled back"
    last = result["details"]["measurements"][-1]
    assert last["outcome"] == "fail"
    why = " ".join(last["reasons"])
    print(why)
    assert "serving skew" in why or "beyond what evaluation measured" in why
    # the judge used evaluation's measurement (it says what it expected)
    assert any(
        k.endswith("_psi_expected") and math.isfinite(float(v))
        for k, v in last["metrics"].items()
        if v is not None
    )
    assert project.state_json("staging")["stable"]["version"] == stable

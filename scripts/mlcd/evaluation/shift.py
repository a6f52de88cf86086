"""How far a model change moves the predictions: the candidate against the champion on the
same held-out rows.

A new model is meant to predict differently; the deploy judge must not take that change for
harm. Evaluation measures it here, on the rows both models scored, in the form the model
server counts its live predictions (`mlcd_predictions_total{class}` and
`mlcd_prediction_score_bucket{le}`: the positive-class probability of a binary classifier,
else the top-class probability), and writes it into `evaluate/verdict.json` as
`prediction_shift`. `mlcd deploy` reads it back (`rollout.gates`) and the judge then allows
the canary this shift against stable, plus `max-prediction-shift`, and checks the canary's
live predictions against its own held-out ones (serving skew).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from mlcd.evaluation.scoring import Scored
from mlcd.rollout.judge import coarse_cells, expected_shift

# the server's score buckets for probabilities (serve/metrics.py SCORE_BUCKETS_PROBA)
SCORE_BOUNDS: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(1, 21))


def _scores(scored: Scored) -> list[float] | None:
    proba = scored.predictions.scores
    if proba is None or scored.predictions.task != "classification":
        return None
    if proba.shape[1] == 2:
        return [float(v) for v in proba[:, 1]]
    return [float(v) for v in proba.max(axis=1)]


def profile(scored: Scored) -> dict[str, Any]:
    """A model's predicted classes and cumulative score buckets on the held-out rows."""
    classes: dict[str, int] = {}
    for label in scored.raw_labels:
        key = str(label.item() if hasattr(label, "item") else label)
        classes[key] = classes.get(key, 0) + 1
    scores = _scores(scored)
    buckets: list[list[float]] = []
    if scores is not None:
        ordered = sorted(s for s in scores if not math.isnan(s))
        buckets = [[b, bisect.bisect_right(ordered, b)] for b in SCORE_BOUNDS]
        buckets.append([math.inf, len(ordered)])
    return {"classes": classes, "scores": buckets}


def _counts(buckets: Sequence[Sequence[float]]) -> list[float]:
    out: list[float] = []
    prev = 0.0
    for _, count in buckets:
        out.append(max(0.0, float(count) - prev))
        prev = float(count)
    return out


def prediction_shift(
    candidate: Scored, champion: Scored | None, champion_version: str | None
) -> dict[str, Any]:
    """`verdict.json`'s `prediction_shift`: both profiles and the PSI between them.

    The PSI is the plain value between the two models' held-out distributions, scores over
    buckets grouped until each holds a few predictions of both models (`judge.coarse_cells`:
    an empty bucket would make the live PSI grow with the sample), as the judge computes it:
    the load test replays those rows, so it is the shift a canary shows against stable.
    """
    mine = profile(candidate)
    out: dict[str, Any] = {
        "rows": len(candidate.raw_labels),
        "candidate": mine,
        "champion": None,
        "champion_version": champion_version,
        "shift": {},
    }
    if champion is None:
        return out
    theirs = profile(champion)
    out["champion"] = theirs
    keys = sorted(set(mine["classes"]) | set(theirs["classes"]))
    shift: dict[str, float] = {
        "classes": round(
            expected_shift(
                [float(theirs["classes"].get(k, 0)) for k in keys],
                [float(mine["classes"].get(k, 0)) for k in keys],
            ),
            5,
        )
    }
    if mine["scores"] and theirs["scores"]:
        a, b = _counts(theirs["scores"]), _counts(mine["scores"])
        groups = coarse_cells(a, b)
        shift["scores"] = round(
            expected_shift(
                [sum(a[i] for i in g) for g in groups], [sum(b[i] for i in g) for g in groups]
            ),
            5,
        )
    out["shift"] = shift
    return out


def jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    """The profile with its +Inf bounds written as the string "+Inf" (JSON has no infinity)."""

    def fix(buckets: list[list[float]]) -> list[list[Any]]:
        return [["+Inf" if math.isinf(b) else b, c] for b, c in buckets]

    out = dict(doc)
    for side in ("candidate", "champion"):
        if isinstance(out.get(side), dict):
            out[side] = {**out[side], "scores": fix(out[side]["scores"])}
    return out

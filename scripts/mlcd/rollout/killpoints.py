"""Kill points: named step boundaries of a rollout where a drill or a test makes the
deploying process SIGKILL itself, to check that recovery finds state, containers and router
agreeing, at an exact instant rather than after a guessed delay.

    MLCD_FAULT_KILL_AT=after-create mlcd deploy staging      # dies once its candidate exists
    MLCD_FAULT_KILL_AT=after-route#2 mlcd deploy staging     # at the second router change

The points (`KILL_POINTS`): `before-create` (the candidate is named in the state, no
container yet), `after-create` (its container exists, not yet ready), `candidate-ready`,
`before-route` and `after-route` (around every router change, before the state records it),
and `in-watch` (blue/green's post-switch watch). Without the variable nothing happens. The
faults that make a *model* misbehave are in `mlcd.rollout.faults`; this module stays free of
numpy and scikit-learn so that the controller imports it at no cost.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "MLCD_FAULT_KILL_AT"
KILL_POINTS = (
    "before-create",
    "after-create",
    "candidate-ready",
    "before-route",
    "after-route",
    "in-watch",
)
_PASSED: dict[str, int] = {}  # passages of each point, in this process


def checkpoint(point: str) -> None:
    """A step boundary: SIGKILL this process here when MLCD_FAULT_KILL_AT names it (`POINT`,
    or `POINT#N` for its N-th passage)."""
    wanted = os.environ.get(KILL_AT, "")
    if not wanted:
        return
    _PASSED[point] = _PASSED.get(point, 0) + 1
    name, _, nth = wanted.partition("#")
    if name == point and _PASSED[point] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)

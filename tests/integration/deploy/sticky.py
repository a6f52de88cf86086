"""Clients for the routing tests: users with a sticky key, and testers forcing an arm.

`Users` sends requests in a thread, each with one of N user ids in the sticky header, and a
share with the forcing header (`canary` or `stable`), to the environment's router; it keeps
(time, user or forced arm, answering model version). `check` reads that against the
environment's history (when each canary step and the promotion or rollback happened).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.integration.deploy.helpers import ROW

# how long after a recorded state change a request may still see the routes before it
# (the change is recorded once the router serves it; requests in flight finish on the old)
SETTLE = 0.5


@dataclass
class Seen:
    at: float
    who: str  # "user-17", or "forced:canary"
    version: str


@dataclass
class Users:
    host: str
    port: int
    users: int = 120
    sticky_header: str = "X-User-Id"
    force_header: str = "X-MLCD-Version"
    seen: list[Seen] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, conn: http.client.HTTPConnection, headers: dict[str, str]) -> str | None:
        body = json.dumps({"records": [ROW]}).encode()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            self.errors += 1
            return None
        version: str = json.loads(data)["model_version"]
        return version

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 10 == 0:
                who = "forced:" + ("canary" if n % 20 == 0 else "stable")
                headers = {self.force_header: who.split(":")[1]}
            else:
                who = f"user-{n % self.users}"
                headers = {self.sticky_header: who}
            try:
                version = self._one(conn, headers)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                continue
            if version is not None:
                self.seen.append(Seen(time.time(), who, version))
            self._stop.wait(0.005)
        conn.close()

    def __enter__(self) -> Users:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def _when(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def check(
    seen: list[Seen], history: list[dict[str, Any]], stable: str, candidate: str, end: str
) -> dict[str, Any]:
    """Assert stickiness and forced routing over one rollout of `candidate` over `stable`
    that ended with `end` ("promoted" or "rolled back"): each user sees one arm in each step
    and moves at most once, from stable to the canary, never back; testers' forced requests
    reach the arm they name. Returns figures for the report."""
    mine = [h for h in history if h.get("version") == candidate]
    steps = [(h["weight"], _when(h)) for h in mine if h["event"] == "canary step"]
    finish = next(_when(h) for h in mine if h["event"] == end)
    if end == "rolled back":  # traffic went back to stable before the candidate was removed
        finish = min(
            _when(h) for h in history if h["event"] == "rolling back" and _when(h) >= steps[0][1]
        )
    assert steps, mine
    bounds = [*(t for _, t in steps), finish]
    phases: list[dict[str, set[str]]] = []
    for index, (weight, start) in enumerate(steps):
        stop = bounds[index + 1]
        arms: dict[str, set[str]] = {}
        for s in seen:
            if start + SETTLE <= s.at <= stop - SETTLE and s.who.startswith("user-"):
                arms.setdefault(s.who, set()).add(s.version)
        phases.append(arms)
        assert arms, f"no user request during the {weight}% step"
    # within a step, one version per user
    for (weight, _), arms in zip(steps, phases, strict=True):
        split = sorted(who for who, versions in arms.items() if len(versions) > 1)
        assert not split, f"users saw both arms within the {weight}% step: {split[:10]}"
    # across steps, a user moves at most once, stable → canary (the canary's buckets only
    # grow), and never back before the rollout ends: one arm per user from the step it
    # reached the canary to the promotion or rollback
    t0 = steps[0][1]
    for who in {w for arms in phases for w in arms}:
        path = [next(iter(arms[who])) for arms in phases if who in arms]
        moves = [(a, b) for a, b in itertools.pairwise(path) if a != b]
        assert moves in ([], [(stable, candidate)]), (
            who,
            [(round(s.at - t0, 2), s.version) for s in seen if s.who == who and s.at >= t0],
        )
    shares = []
    for (weight, _), arms in zip(steps, phases, strict=True):
        on_canary = sum(1 for v in arms.values() if candidate in v)
        share = on_canary / len(arms)
        shares.append((weight, round(share, 3), len(arms)))
        # about the step's weight of the users (binomial spread over ~100 users)
        assert abs(share - weight / 100) <= 0.2, shares
    # forced requests reach the arm they name, at every step
    start, stop = steps[0][1] + SETTLE, finish - SETTLE
    forced = [s for s in seen if s.who.startswith("forced:") and start <= s.at <= stop]
    assert forced
    for s in forced:
        assert s.version == (candidate if s.who == "forced:canary" else stable), s
    return {
        "users_per_step": shares,
        "users_moved": sum(
            1
            for who in {w for arms in phases for w in arms}
            if len({next(iter(arms[who])) for arms in phases if who in arms}) > 1
        ),
        "user_requests": sum(1 for s in seen if s.who.startswith("user-")),
        "forced_requests": len(forced),
    }

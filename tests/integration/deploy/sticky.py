"""Clients for the routing tests: users with a sticky key, and testers forcing an arm.

`Users` sends requests in a thread, each with one of N user ids in the sticky header (each
user always sends the same held-out row: a cohort of users has an input mix of its own, as
real users do), and a share with the forcing header (`canary` or `stable`), to the
environment's router; it keeps (time, user or forced arm, answering model version). `check`
reads that against the environment's history (when the canary step and the promotion or
rollback happened).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.integration.deploy.conftest import holdout_rows_for_tests

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
    users: int = 300
    threads: int = 3  # clients at once, each cycling through its share of the users
    sticky_header: str = "X-User-Id"
    force_header: str = "X-MLCD-Version"
    seen: list[Seen] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]
        self._rows = holdout_rows_for_tests()

    def row(self, who: str) -> dict[str, float]:
        """The one row a user sends (testers send the first)."""
        index = int(who.rsplit("-", 1)[1]) if who.startswith("user-") else 0
        return self._rows[(index * 7) % len(self._rows)]

    def _failed(self) -> None:
        with self._lock:
            self.errors += 1

    def _one(
        self, conn: http.client.HTTPConnection, who: str, headers: dict[str, str]
    ) -> str | None:
        body = json.dumps({"records": [self.row(who)]}).encode()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            self._failed()
            return None
        version: str = json.loads(data)["model_version"]
        return version

    def _run(self, thread: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        n = user = 0
        while not self._stop.is_set():
            n += 1
            if n % 10 == 0:
                who = "forced:" + ("canary" if n % 20 == 0 else "stable")
                headers = {self.force_header: who.split(":")[1]}
            else:
                user += 1
                who = f"user-{(thread + user * self.threads) % self.users}"
                headers = {self.sticky_header: who}
            try:
                version = self._one(conn, who, headers)
            except (OSError, http.client.HTTPException):
                self._failed()
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                continue
            if version is not None:
                with self._lock:
                    self.seen.append(Seen(time.time(), who, version))
            self._stop.wait(0.002)
        conn.close()

    def __enter__(self) -> Users:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)
        self.seen.sort(key=lambda s: s.at)


def _when(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def check(
    seen: list[Seen],
    history: list[dict[str, Any]],
    stable: str,
    candidate: str,
    end: str,
    *,
    min_users: int = 250,
    min_visits: int = 3,
) -> dict[str, Any]:
    """Assert stickiness and forced routing over one rollout of `candidate` over `stable`
    that ended with `end` ("promoted" or "rolled back"): every user sees exactly one version
    from the first canary step to the promotion or rollback (`routing.sticky: strict`: one
    cohort step), about the step's weight of the users on the canary; testers'
    forced requests reach the arm they name at every step. A rollout that ends within seconds
    (a rollback at the first look) sees fewer users, fewer times: `min_users`, `min_visits`
    (nine users in ten came back at least that often). Returns figures for the report."""
    mine = [h for h in history if h.get("version") == candidate]
    steps = [(h["weight"], _when(h)) for h in mine if h["event"] == "canary step"]
    assert len(steps) == 1, steps  # strict: the steps collapse into one cohort
    finish = next(_when(h) for h in mine if h["event"] == end)
    if end == "rolled back":  # traffic went back to stable before the candidate was removed
        finish = min(
            _when(h) for h in history if h["event"] == "rolling back" and _when(h) >= steps[0][1]
        )
    start, stop = steps[0][1] + SETTLE, finish - SETTLE
    arms: dict[str, set[str]] = {}
    for s in seen:
        if start <= s.at <= stop and s.who.startswith("user-"):
            arms.setdefault(s.who, set()).add(s.version)
    assert len(arms) >= min_users, f"only {len(arms)} users sent requests during the rollout"
    per_user = sorted(
        sum(1 for s in seen if s.who == who and start <= s.at <= stop) for who in arms
    )
    # every user came back several times: one version each is a promise kept, not one visit
    assert per_user[len(per_user) // 10] >= min_visits, per_user[:20]
    t0 = steps[0][1]
    split = sorted(who for who, versions in arms.items() if len(versions) > 1)
    assert not split, (
        f"{len(split)} users saw both versions between the first step and the {end}",
        [(round(s.at - t0, 2), s.version) for s in seen if s.who == split[0] and s.at >= t0],
    )
    weight = steps[0][0]
    on_canary = sum(1 for v in arms.values() if candidate in v)
    share = on_canary / len(arms)
    # about the cohort's weight of the users (binomial spread over some 300 users)
    assert abs(share - weight / 100) <= 0.12 + 1.0 / len(arms) ** 0.5, (share, weight)
    # forced requests reach the arm they name, at every step
    forced = [s for s in seen if s.who.startswith("forced:") and start <= s.at <= stop]
    assert {s.who for s in forced} == {"forced:canary", "forced:stable"}, forced[:5]
    for s in forced:
        assert s.version == (candidate if s.who == "forced:canary" else stable), s
    return {
        "users": len(arms),
        "users_on_canary": (weight, on_canary, round(share, 3)),
        "requests_per_user": (per_user[0], per_user[len(per_user) // 2], per_user[-1]),
        "user_requests": sum(
            1 for s in seen if s.who.startswith("user-") and start <= s.at <= stop
        ),
        "forced_requests": len(forced),
        "seconds": round(stop - start, 1),
    }

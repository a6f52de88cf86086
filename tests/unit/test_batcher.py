"""The micro-batcher: after a slow model call answered several clients, their next
requests are gathered into one call instead of leaving it half full."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlcd.serve.server import Batcher
from mlcd.serve.settings import ServeSettings


class _SlowApp:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[int] = []

    def run_batch(self, jobs: list[Any]) -> None:
        self.calls.append(len(jobs))
        time.sleep(self.seconds)
        for job in jobs:
            job.output = "ok"


def _job() -> Any:
    return SimpleNamespace(parsed=SimpleNamespace(rows=[0]), output=None, error=None)


def _closed_loop(model_seconds: float, clients: int, rounds: int) -> list[int]:
    """`clients` clients, each sending its next request as soon as it has an answer."""
    app = _SlowApp(model_seconds)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher = Batcher(app, loop, ServeSettings(model_dir=Path()))  # type: ignore[arg-type]
        finished = asyncio.Event()
        left = {"n": clients * rounds}

        def send(client: int) -> None:
            batcher.submit(_job(), lambda _job: answered(client))

        def answered(client: int) -> None:
            left["n"] -= 1
            if left["n"] <= 0:
                finished.set()
            elif left["n"] >= clients:  # each client's round trip takes its own time
                loop.call_later(0.0006 * (client + 1), send, client)

        for client in range(clients):
            send(client)
        await asyncio.wait_for(finished.wait(), 30)
        batcher.executor.shutdown(wait=True)

    asyncio.run(main())
    return app.calls


def test_a_slow_model_gets_full_batches() -> None:
    calls = _closed_loop(0.04, clients=8, rounds=6)
    # without gathering, the 8 clients split into two alternating half batches
    assert max(calls[1:-1]) == 8
    assert len(calls) <= 7  # without gathering: [8, 6, 2, 6, 2, …], 11 calls


def test_a_fast_model_never_waits() -> None:
    calls = _closed_loop(0.0002, clients=1, rounds=20)
    assert calls == [1] * 20

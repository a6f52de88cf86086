"""mlcd.ports: ports below the ephemeral range, free, never given twice."""

from __future__ import annotations

import socket

import pytest

from mlcd import ports
from mlcd.errors import EnvironmentMissing

pytestmark = pytest.mark.integration


def test_ports_are_below_the_ephemeral_range_and_distinct() -> None:
    low = ports.ephemeral_low()
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == len(given)
    assert all(1024 <= p < low for p in given)


def test_a_port_something_listens_on_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = int(busy.getsockname()[1])
        busy.listen()
        # a range of exactly one port, the busy one: nothing to give
        monkeypatch.setattr(ports, "ephemeral_low", lambda: taken + 1)
        monkeypatch.setattr(ports, "_SPAN", 0)
        with pytest.raises(EnvironmentMissing, match=f"{taken}-{taken}"):
            ports.free_port()

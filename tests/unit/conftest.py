"""Unit tests run no subprocess and open no socket: an autouse fixture makes both fail."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import pytest


class StrayCallError(AssertionError):
    """A unit test tried to start a program or use the network."""


@pytest.fixture(autouse=True)
def _no_subprocess_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_process(*args: Any, **kwargs: Any) -> Any:
        raise StrayCallError(f"unit tests must not start programs: {args[:1]}")

    def refuse_socket(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        raise StrayCallError(f"unit tests must not use the network: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse_process)
    monkeypatch.setattr(os, "system", refuse_process)
    monkeypatch.setattr(os, "posix_spawn", refuse_process)
    monkeypatch.setattr(os, "fork", refuse_process)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_socket)
    monkeypatch.setattr(socket.socket, "bind", refuse_socket)

"""The unit-test guard itself: a stray subprocess or socket call fails the test."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.unit.conftest import StrayCallError


def test_subprocess_is_refused() -> None:
    with pytest.raises(StrayCallError):
        subprocess.run(["true"], check=False)


def test_socket_connect_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(StrayCallError):
        sock.connect(("127.0.0.1", 9))

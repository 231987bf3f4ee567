"""Fixtures of the launch tests."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def busy_port():
    """A TCP port this machine is listening on for the test's length: a MASTER_PORT that is in use."""
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        yield held.getsockname()[1]

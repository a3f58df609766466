"""Loopback helpers shared by the tests that start real servers (Ray head, MLflow, agents)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (the socket that found it is closed on return)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

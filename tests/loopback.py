"""Loopback helpers shared by the tests that start real servers (Ray head, MLflow, agents)."""

from __future__ import annotations

import socket

RAY_DEFAULT_AGENT_PORT = 52365  # ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT


def free_port() -> int:
    """A port nothing listens on right now (the socket that found it is closed on return)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def own_ray_head_ports() -> list[str]:
    """`ray start --head` flags for the ports Ray otherwise fixes (agent HTTP 52365, client 10001).

    Two Ray instances on one machine (another search, a user's cluster, a second test run) both
    want those. The one that loses 52365 has no job agent, and `ray job submit` to it fails with
    "No available agent": seen when a demo search ran beside the suite.
    """
    return [f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]


def port_opens(port: int, seconds: float) -> bool:
    """Whether something listens on 127.0.0.1:`port` within `seconds` (a server still starting)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False

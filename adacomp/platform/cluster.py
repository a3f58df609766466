"""Joining a Ray cluster: one way for every command that takes `--address` (search, nightly,
supernet training) and for `adacomp submit`'s job client.

Ray >= 2.59 starts clusters with token authentication wherever a token exists
(`~/.ray/auth_token`, `RAY_AUTH_TOKEN_PATH` or `RAY_AUTH_TOKEN`), but a driver *joining* one
sends the token only when `RAY_AUTH_MODE=token` is in its environment, which Ray reads into
its config once. `submit` set it and `search --address` did not: the same cluster refused the
second with a 64-line traceback. Here the mode is set before Ray reads it (or Ray's config is
refreshed when Ray is already loaded), and a cluster that cannot be joined is one line (exit 2)
instead of a traceback, or of minutes of Ray retrying an address nothing listens on.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from adacomp.errors import AdacompError, first_line

AUTH_MODE = "RAY_AUTH_MODE"
PROBE_TIMEOUT_S = 5.0


def token_available() -> bool:
    """Whether this machine holds a Ray auth token where Ray looks for one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def prepare_auth() -> bool:
    """Send the token to any cluster joined from this process when one is available and the user
    has not chosen a mode. True when token mode is on."""
    mode = os.environ.get(AUTH_MODE)
    if mode is not None:
        return mode.lower() == "token"
    if not token_available():
        return False
    os.environ[AUTH_MODE] = "token"
    if "ray" in sys.modules:  # Ray already read its config: refresh it (what `ray start` does)
        try:
            import ray._raylet

            ray._raylet.Config.initialize("")  # type: ignore[attr-defined]  # compiled, untyped
        except (ImportError, AttributeError):  # another Ray: the environment variable is all we have
            pass
    return True


def check_reachable(address: str) -> None:
    """A `host:port` GCS address must accept a connection, checked in seconds: `ray.init`
    itself retries an address nothing listens on for minutes before it gives up."""
    if address == "auto" or "://" in address:
        return  # Ray's own lookup (auto) or the Ray client (ray://): Ray says what is wrong
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AdacompError(f"address: expected HOST:PORT of a Ray head (e.g. 10.0.0.1:6379), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AdacompError(f"address: no Ray cluster answers at {address} ({reason})") from None


def join(address: str) -> None:
    """`ray.init(address=...)`, with the token when one is available; one line when it fails."""
    token = prepare_auth()
    check_reachable(address)
    import ray

    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, version mismatch
        reason = first_line(exc)
        if not token and ("auth" in reason.lower() or isinstance(exc, ConnectionError)):
            raise AdacompError(
                f"address: the Ray cluster at {address} refused this driver ({reason}); if it uses "
                "token authentication, copy the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN)"
            ) from None
        raise AdacompError(f"address: cannot join the Ray cluster at {address} ({reason})") from None

"""A real two-node Ray cluster on loopback with token authentication, as Ray 2.60 sets it up;
started once for the ops tests by tests/ops/conftest.py (`ray_cluster`) and used by
test_cluster_join.py and test_submit.py.

The head and a worker node that offers `device:myhost` are started with `ray start --block`,
both with `RAY_AUTH_MODE=token` and a token file of their own (`RAY_AUTH_TOKEN_PATH`). Clients
get the token *path* only (`Cluster.env`), as a user who copied the head's token gets it:
joining must turn the mode on by itself. Each `ray start` runs in its own process group and
temp dir, so stopping the cluster stops it and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.loopback import free_port, own_ray_head_ports, port_opens

BIN = Path(sys.executable).parent
# `ray start --block` drains its node on SIGTERM for up to this long before stopping it (for
# Kubernetes); a worker node that hosts an actor never finishes draining, so each stop took the
# whole 30 s default. 0 turns draining off: SIGTERM stops the node's processes at once.
NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
STOP_PATIENCE_S = 20.0  # then SIGKILL (a busy machine); a stop takes a few seconds


@dataclass(frozen=True)
class Cluster:
    gcs: str  # 127.0.0.1:PORT, what `--address` takes
    dashboard: str  # http://127.0.0.1:PORT, what `adacomp submit --address` takes
    env: dict[str, str]  # the client's environment: the token's path, no auth mode

    def listed(self, kind: str, **equal: str) -> list[dict[str, Any]]:
        """Ray's state API over the dashboard's HTTP (`ray list KIND`, `list_actors`...), with the
        token: e.g. `listed("actors", class_name="DeviceActor")`. No Ray client is started for it."""
        query = [("limit", "1000"), ("detail", "true")]
        for key, value in equal.items():
            query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        request = urllib.request.Request(
            f"{self.dashboard}/api/v0/{kind}?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if not answer.get("result"):
            raise RuntimeError(f"state API {kind}: {answer.get('msg')}")
        return list(answer["data"]["result"]["result"])


def client_env(token: Path) -> dict[str, str]:
    """This environment without Ray's variables, plus this venv's `python` first on PATH (a job's
    `python`) and the token's path (but no auth mode)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base["PATH"] = f"{BIN}{os.pathsep}{base['PATH']}"
    base["RAY_AUTH_TOKEN_PATH"] = str(token)
    return base


def write_token(directory: Path) -> Path:
    token = directory / "auth_token"
    token.write_text("adacomp-test-cluster-token-" + os.urandom(8).hex())
    token.chmod(0o600)
    return token


def _ray_start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole, nothing else touched
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each node's process group (`ray start` then stops the processes it started),
    SIGKILL to what is left of the group once `ray start` has exited or the patience ran out."""
    for process in processes:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_PATIENCE_S
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with suppress(ProcessLookupError):  # a straggler (the group outlives its leader)
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _worker_joined(cluster: Cluster) -> bool:
    try:
        nodes = cluster.listed("nodes")
    except (OSError, RuntimeError, ValueError):  # the dashboard is still starting its modules
        return False
    return any(node["state"] == "ALIVE" and "device:myhost" in node["resources_total"] for node in nodes)


@contextmanager
def two_node_cluster(secrets: Path) -> Iterator[Cluster]:
    """The head (2 CPUs, the dashboard, its own agent and client ports: `own_ray_head_ports`) and
    a worker node (1 CPU, `device:myhost`), up and joined; stopped, and their temp dirs removed,
    on exit."""
    token = write_token(secrets)
    base = client_env(token)
    node_env = {**base, "RAY_AUTH_MODE": "token", **NO_DRAIN}
    port, dashboard = free_port(), free_port()
    temp = Path("/tmp") / f"adacomp-2node-{os.getpid()}"  # short: Ray's socket paths must fit
    processes = [
        _ray_start(
            node_env,
            "--head",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            *own_ray_head_ports(),
            "--num-cpus=2",
            f"--temp-dir={temp}",
        )
    ]
    try:
        if not port_opens(port, 120):
            pytest.fail(f"the head's GCS never came up on port {port}")
        processes.insert(
            0,  # stopped first, as it joined last
            _ray_start(
                node_env,
                f"--address=127.0.0.1:{port}",
                "--num-cpus=1",
                '--resources={"device:myhost": 1}',
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                # Its own temp dir, as on a machine of its own: sharing the head's, its runtime-env
                # agent garbage-collected the job's working directory under the job's driver.
                f"--temp-dir={temp}w",
            ),
        )
        if not port_opens(dashboard, 120):
            pytest.fail(f"the head's dashboard never came up on port {dashboard}")
        cluster = Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", base)
        deadline = time.monotonic() + 120
        while not _worker_joined(cluster):  # the worker node has joined when its resource shows
            if time.monotonic() > deadline:
                pytest.fail("the worker node never offered device:myhost")
            time.sleep(0.5)
        yield cluster
    finally:
        _stop(processes)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(f"{temp}w", ignore_errors=True)

"""A real two-node Ray cluster on loopback, with token authentication as Ray 2.60 sets it up
(issue 20, items 1 and 2).

The head and a worker node that offers `device:myhost` are started with `ray start`, both with
`RAY_AUTH_MODE=token` and a token file of their own (`RAY_AUTH_TOKEN_PATH`). adacomp's processes
get the token *path* only, as a user who copied the head's token gets it: joining must turn the
mode on by itself. The search and the submitted job name their farm and its store by relative
paths, given by a relative config path: every trial must succeed (Tune runs each in its own
working directory), and the device's actor must run on the worker node. The test stops the
cluster it started, and only that (each `ray start` in its own process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.loopback import free_port, port_opens

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Cluster:
    gcs: str  # 127.0.0.1:PORT, what `--address` takes
    dashboard: str  # http://127.0.0.1:PORT, what `adacomp submit --address` takes
    env: dict[str, str]  # the client's environment: the token's path, no auth mode


def _wait_for_port(port: int, what: str, seconds: float = 120) -> None:
    if not port_opens(port, seconds):
        pytest.fail(f"{what} never came up on port {port}")


def _ray(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole, nothing else touched
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    secrets = tmp_path_factory.mktemp("secrets")
    token = secrets / "auth_token"
    token.write_text("adacomp-test-cluster-token-" + os.urandom(8).hex())
    token.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base["PATH"] = f"{BIN}{os.pathsep}{base['PATH']}"  # the job's `python` is this venv's
    base["RAY_AUTH_TOKEN_PATH"] = str(token)
    node_env = {**base, "RAY_AUTH_MODE": "token"}
    port, dashboard = free_port(), free_port()
    temp = Path("/tmp") / f"adacomp-2node-{os.getpid()}"  # short: Ray's socket paths must fit
    head = _ray(
        node_env,
        "--head",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=2",
        f"--temp-dir={temp}",
    )
    processes = [head]
    try:
        _wait_for_port(dashboard, "the head's dashboard")
        worker = _ray(
            node_env,
            f"--address=127.0.0.1:{port}",
            "--num-cpus=1",
            '--resources={"device:myhost": 1}',
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            # Its own temp dir, as on a machine of its own: sharing the head's, its runtime-env
            # agent garbage-collected the job's working directory under the job's driver.
            f"--temp-dir={temp}w",
        )
        processes.append(worker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the worker node has joined when its resource shows
            status = subprocess.run(
                [str(BIN / "ray"), "status", f"--address=127.0.0.1:{port}"],
                env=node_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if "device:myhost" in status.stdout:
                break
            time.sleep(1)
        else:
            pytest.fail("the worker node never offered device:myhost")
        yield Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", base)
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        subprocess.run(["rm", "-rf", str(temp), f"{temp}w"], check=False)


def _write(directory: Path, runs: Path, trials: int) -> None:
    """A search config and a farm config naming each other and the store by relative paths."""
    (directory / "tests" / "platform").mkdir(parents=True)
    for package in ("tests", "tests/platform"):
        (directory / package / "__init__.py").write_text("")
    source = REPO / "tests" / "platform" / "tiny_task.py"
    (directory / "tests" / "platform" / "tiny_task.py").write_text(source.read_text())
    (directory / "farm_cluster.yaml").write_text(
        yaml.safe_dump(
            {
                "devices": [
                    {"name": "myhost", "kind": "host", "class": "host"},  # an actor on the worker
                    {"name": "phone", "kind": "emulated", "class": "pixel4", "profile": "pixel4"},
                ],
                "store": "measurements_cluster",
            }
        )
    )
    config = {
        "name": "cluster",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["myhost", "phone"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "myhost"}],
        "finetune": {"steps": 5},
        "trials": trials,
        "concurrency": 2,
        "strategy": "random",
        "farm": "farm_cluster.yaml",
        "measure": {"warmup_runs": 1, "min_runs": 5, "max_runs": 20, "max_cv": 10, "max_seconds": 5},
        "output": {"dir": str(runs)},
    }
    (directory / "search.yaml").write_text(yaml.safe_dump(config))


def _adacomp(cluster: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adacomp", *args],
        cwd=cwd,
        env={**cluster.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _records(runs: Path) -> list[dict[str, object]]:
    lines = (runs / "cluster" / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_search_joins_a_token_cluster_with_relative_paths(cluster: Cluster, tmp_path: Path) -> None:
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=3)
    done = _adacomp(cluster, "search", "search.yaml", "--address", cluster.gcs, "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 trials (0 failed)" in done.stdout, done.stdout[-2000:]
    records = _records(runs)
    assert len(records) == 3 and not any(r.get("failed") for r in records)
    # The store is where the farm file says, next to it, whatever Tune's working directories were.
    store = work / "measurements_cluster"
    rows = [row for part in store.glob("part-*.parquet") for row in pq.read_table(part).to_pylist()]
    assert {row["device"] for row in rows} == {"myhost", "phone"}  # the actor's and the trials'
    assert all(row["status"] == "ok" for row in rows)
    # The device's actor ran on the node that offers device:myhost (the worker, not the head).
    nodes = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, ray; from ray.util.state import list_actors, list_nodes; "
            f"ray.init(address={cluster.gcs!r}, log_to_driver=False); "
            "nodes = {n.node_id: n.resources_total for n in list_nodes()}; "
            "actors = [a.node_id for a in list_actors(filters=[('class_name', '=', 'DeviceActor')], limit=100)]; "
            "print(json.dumps([nodes.get(a, {}) for a in actors]))",
        ],
        env={**cluster.env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert nodes.returncode == 0, nodes.stderr[-2000:]
    placed = json.loads(nodes.stdout.strip().splitlines()[-1])
    assert placed and all("device:myhost" in resources for resources in placed)


def test_submit_runs_the_same_search_as_a_job(cluster: Cluster, tmp_path: Path) -> None:
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=2)
    done = _adacomp(cluster, "submit", "search.yaml", "--address", cluster.dashboard, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 trials (0 failed)" in done.stdout, done.stdout[-2000:]
    assert len(_records(runs)) == 2


def test_an_unreachable_cluster_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=2)
    started = time.monotonic()
    done = _adacomp(cluster, "search", "search.yaml", "--address", f"127.0.0.1:{free_port()}", cwd=work)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:" in done.stderr
    assert time.monotonic() - started < 120  # Ray alone retries an empty address for minutes
    assert not (runs / "cluster" / "trials.jsonl").exists()

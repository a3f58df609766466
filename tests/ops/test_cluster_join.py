"""Joining a real two-node Ray cluster on loopback, with token authentication as Ray 2.60 sets
it up (issue 20, items 1 and 2): `ray_cluster` (tests/ops/conftest.py, tests/helpers/ray_cluster.py).

The head and a worker node that offers `device:myhost` run with `RAY_AUTH_MODE=token` and a
token file of their own. adacomp's processes get the token *path* only, as a user who copied the
head's token gets it: joining must turn the mode on by itself. The search and the submitted job
name their farm and its store by relative paths, given by a relative config path: every trial
must succeed (Tune runs each in its own working directory), and the device's actor must run on
the worker node.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers.ray_cluster import Cluster, client_env, write_token
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


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


def _adacomp(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adacomp", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _records(runs: Path) -> list[dict[str, object]]:
    lines = (runs / "cluster" / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_search_joins_a_token_cluster_with_relative_paths(ray_cluster: Cluster, tmp_path: Path) -> None:
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=3)
    done = _adacomp(
        ray_cluster.env, "search", "search.yaml", "--address", ray_cluster.gcs, "--quiet", cwd=work
    )
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
    # Ray's state API (what `ray list actors` reads), asked over the dashboard with the token.
    nodes = {node["node_id"]: node["resources_total"] for node in ray_cluster.listed("nodes")}
    actors = ray_cluster.listed("actors", class_name="DeviceActor")
    placed = [nodes.get(actor["node_id"], {}) for actor in actors]
    assert placed and all("device:myhost" in resources for resources in placed)


def test_submit_runs_the_same_search_as_a_job(ray_cluster: Cluster, tmp_path: Path) -> None:
    """Also test_submit.py's successful job (merged here: one job fewer on the shared cluster): it
    runs under its submission id, is followed to the end, and that id again follows it."""
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=2)
    submit = ("submit", "search.yaml", "--address", ray_cluster.dashboard, "--submission-id", "nightly-1")
    done = _adacomp(ray_cluster.env, *submit, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 trials (0 failed)" in done.stdout, done.stdout[-2000:]
    assert len(_records(runs)) == 2
    assert "submitted nightly-1" in done.stderr and "nightly-1: SUCCEEDED" in done.stderr
    assert "search 'cluster': 2 trials" in done.stdout  # the job's own output, streamed here
    assert len((runs / "cluster" / "trials.jsonl").read_text().splitlines()) == 2
    # The same id again follows that job instead of running a second search.
    again = _adacomp(ray_cluster.env, *submit, cwd=work)
    assert again.returncode == 0 and "following it, not submitting again" in again.stderr
    assert len((runs / "cluster" / "trials.jsonl").read_text().splitlines()) == 2


def test_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    """An address nothing answers at (no cluster needed), with a token path as a client of one has."""
    work, runs = tmp_path / "work", tmp_path / "runs"
    _write(work, runs, trials=2)
    env = client_env(write_token(tmp_path))
    started = time.monotonic()
    done = _adacomp(env, "search", "search.yaml", "--address", f"127.0.0.1:{free_port()}", cwd=work)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "no Ray cluster answers at 127.0.0.1:" in done.stderr
    assert time.monotonic() - started < 120  # Ray alone retries an empty address for minutes
    assert not (runs / "cluster" / "trials.jsonl").exists()

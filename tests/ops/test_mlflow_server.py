"""A shared MLflow server, started with the README's own command (database backend, artifact
root), on loopback: many trials logging at once, and a search that loses the server for a while
and one of its trial workers on the way, and still ends with every trial logged exactly once."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.tracking import COMPLETE_TAG, TRIAL_TAG, SearchTracker
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, Step
from tests.helpers.readme_console import readme_console_lines
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]


class Server:
    """`mlflow server` exactly as the README starts it, on a port of our choosing."""

    def __init__(self, cwd: Path) -> None:
        lines = readme_console_lines()
        assert "mkdir -p runs" in lines
        self.argv = shlex.split(next(line for line in lines if line.startswith("mlflow server")))
        self.cwd, self.port = cwd, free_port()
        self.argv[self.argv.index("--port") + 1] = str(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.cwd / "runs").mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", *self.argv[1:]],
            cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180  # a busy 2-core machine starts it slowly
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("mlflow server did not come up")

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (its start is seconds): each test logs its own search to it,
    and the outage test, which kills and restarts it, runs last."""
    running = Server(tmp_path_factory.mktemp("mlflow-server"))
    running.start()
    yield running
    running.kill()


def _record(number: int) -> TrialRecord:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("magnitude_prune", sparsity=0.1 + number / 100)]})
    return TrialRecord(
        number, plan, metrics={"accuracy": 0.9, "storage": 1000.0 + number}, utility=0.5, violations=(0.0,)
    )


def _children(uri: str, parent: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)


@pytest.mark.slow  # a real `mlflow server` process (seconds to start) and 48 runs logged through it
def test_many_trials_log_at_once_and_nothing_is_lost(server: Server, tmp_path: Path) -> None:
    config = SearchConfig.model_validate(
        {"name": "shared", "task": "digits", "targets": ["pixel4"], "objectives": [{"metric": "accuracy"}],
         "output": {"dir": str(tmp_path / "local"), "tracking_uri": server.url}}
    )  # fmt: skip
    tracker = SearchTracker.for_config(config)
    parent = tracker.start_search(config, tmp_path, {"accuracy": 0.95})
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx, but an artifact of 2 KB" * 50)
    errors: list[BaseException] = []

    def logger(first: int) -> None:
        try:
            own = SearchTracker.for_config(config)  # one client per logger, as separate drivers have
            for number in range(first, first + 4):
                own.log_trial(parent, _record(number), model)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=logger, args=(4 * i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    children = _children(server.url, parent)
    assert sorted(int(c.data.tags[TRIAL_TAG]) for c in children) == list(range(48))
    assert all(c.data.tags[COMPLETE_TAG] == "true" and c.data.metrics["utility"] == 0.5 for c in children)
    stored = list((server.cwd / "runs" / "mlflow-artifacts").rglob("model.onnx"))
    assert len(stored) == 48  # the server's artifact root holds them, not the clients


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_a_trial_worker(search_pid: int) -> bool:
    for pid in _descendants(search_pid):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ImplicitFunc" in title:
            os.kill(pid, signal.SIGKILL)
            return True
    return False


def _wait(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_search_outlives_the_server_and_a_killed_trial_worker(server: Server, tmp_path: Path) -> None:
    config = {
        "name": "outage",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "finetune": {"steps": 40},
        "trials": 5,
        "concurrency": 2,
        "strategy": "random",
        "output": {"dir": str(tmp_path / "runs"), "tracking_uri": server.url, "mlflow_wait_s": 120},
    }
    path = tmp_path / "outage.yaml"
    path.write_text(yaml.safe_dump(config))
    ledger = tmp_path / "runs" / "outage" / "trials.jsonl"

    def finished() -> int:
        return len(ledger.read_text().splitlines()) if ledger.exists() else 0

    search = subprocess.Popen(
        [sys.executable, "-m", "adacomp", "search", str(path), "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert _wait(lambda: finished() >= 1, 240), "no trial finished"
        server.kill()  # the MLflow server goes away mid-search...
        killed = _wait(lambda: _kill_a_trial_worker(search.pid), 60)  # ...and so does a trial worker
        _wait(lambda: finished() >= 3, 120)
        server.start()  # back, same database, same port
        _, err = search.communicate(timeout=300)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 0, err[-3000:]
    assert "does not answer" in err and "MLflow is back" in err
    records = [TrialRecord.from_dict(yaml.safe_load(line)) for line in ledger.read_text().splitlines()]
    assert sorted(r.number for r in records) == list(range(5))
    assert killed
    crashed = [r for r in records if r.failed]
    assert len(crashed) <= 1 and all("crashed" in (r.reason or "") for r in crashed)
    parent = yaml.safe_load((tmp_path / "runs" / "outage" / "search.json").read_text())["parent_run_id"]
    children = _children(server.url, parent)
    assert sorted(int(c.data.tags[TRIAL_TAG]) for c in children) == list(range(5))  # each once
    assert all(c.data.tags.get(COMPLETE_TAG) == "true" for c in children)
    assert "front.csv" in {
        a.path.split("/")[-1] for a in mlflow.MlflowClient(server.url).list_artifacts(parent, "pareto")
    }

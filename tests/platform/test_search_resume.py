"""A search killed mid-way (SIGKILL to its whole process group: driver, Ray, trial workers) and
resumed with `adacomp search --resume`: nothing finished is lost, re-run or logged twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adacomp.platform.results.ledger import Ledger

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
name: resumable
task: tests.platform.tiny_task:tiny_digits
targets: [pixel4]
objectives: [{metric: accuracy}, {metric: latency, target: pixel4}]
constraints: [{metric: accuracy_drop, max: 50}]
finetune: {steps: 5}
trials: 4
concurrency: 2
strategy: nsga2
seed: 1
output: {dir: runs}
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "adacomp.platform.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_kill_and_resume(tmp_path: Path) -> None:
    (tmp_path / "search.yaml").write_text(CONFIG)
    ledger = Ledger(tmp_path / "runs" / "resumable" / "trials.jsonl")
    first = subprocess.Popen(
        _cli("search", "search.yaml", "--quiet"),
        cwd=tmp_path,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while len(ledger.load()) < 2:
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "the search never finished two trials"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = ledger.load()
    assert 2 <= len(before) < 4

    resumed = subprocess.run(
        _cli("search", "search.yaml", "--resume", "--quiet"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {len(before)} trials finished" in resumed.stderr
    after = ledger.load()
    assert len(after) == 4 and len({r.number for r in after}) == 4
    # Nothing finished was re-run: the first run's records are there unchanged, and a plan the
    # resumed sampler proposed again was served from the record, not evaluated.
    assert [r.to_dict() for r in after if r.number in {b.number for b in before}] == [
        b.to_dict() for b in before
    ]
    first_hashes = {b.plan.hash for b in before if not b.failed}
    for record in after[len(before) :]:
        assert record.plan.hash not in first_hashes or record.duplicate_of is not None

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("adacomp")
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`adacomp.search` = 'resumable'"
    )
    assert len(parents) == 1, "resuming must not start a second parent run"
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    numbers = sorted(int(c.data.tags["adacomp.trial"]) for c in children)
    assert numbers == sorted(r.number for r in after), "one child run per trial, none twice"

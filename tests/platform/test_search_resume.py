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


STAGED = """
name: staged
task: tests.platform.tiny_task:tiny_digits
targets: [pixel4]
objectives: [{metric: accuracy}, {metric: latency, target: pixel4}]
constraints: [{metric: accuracy_drop, max: 50}]
finetune: {steps: 900}
fidelity: {rungs: 3, eta: 3, min_results: 100}
trials: 2
concurrency: 2
strategy: random
seed: 2
output: {dir: runs}
"""


def test_a_kill_mid_rung_resumes_after_the_last_finished_stage(tmp_path: Path) -> None:
    """Killed while a plan fine-tunes its second stage (stages end at 100, 300 and 900 steps;
    nothing is stopped early here), the resumed search proposes that plan first and continues
    it: its first stage is the one scored before the kill, never redone, and it ends at 900."""
    import json

    (tmp_path / "search.yaml").write_text(STAGED)
    job = tmp_path / "runs" / "staged"
    ledger = Ledger(job / "trials.jsonl")

    def cut_short() -> dict[str, list[dict[str, object]]]:
        done = {r.plan.hash for r in ledger.load()}
        return {
            p.stem: json.loads((job / "rungs" / f"{p.stem}.json").read_text())["rungs"]
            for p in (job / "rungs").glob("*.pt")
            if p.stem not in done and (job / "rungs" / f"{p.stem}.json").exists()
        }

    first = subprocess.Popen(
        _cli("search", "search.yaml", "--quiet"),
        cwd=tmp_path,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not (job / "rungs").exists() or not cut_short():
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "no plan ever finished its first stage"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    pending = cut_short()
    assert pending, "the kill came after the plan finished"

    resumed = subprocess.run(
        _cli("search", "search.yaml", "--resume", "--quiet"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "plans continue their fine-tune after their last finished stage" in resumed.stderr
    after = {r.plan.hash: r for r in ledger.load() if r.duplicate_of is None}
    assert len(ledger.load()) == 2
    for plan_hash, saved in pending.items():
        record = after[plan_hash]
        assert record.metrics["finetune_steps"] == 900.0 and record.stopped_at is None
        assert [r.to_dict() for r in record.rungs[: len(saved)]] == saved, "a finished stage was redone"
        assert [r.steps for r in record.rungs] == [100, 300]
        assert not (job / "rungs" / f"{plan_hash}.pt").exists(), "settled plans keep no weights"

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("adacomp")
    assert experiment is not None
    resumed_plan = next(iter(pending))
    child = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`adacomp.plan_hash` = '{resumed_plan}'"
    )
    evaluated = [c for c in child if "adacomp.duplicate_of" not in c.data.tags]  # issue 20 item 3
    assert len(evaluated) == 1, "one evaluated child run per plan"
    curve = client.get_metric_history(evaluated[0].info.run_id, "rung_accuracy")
    assert sorted(m.step for m in curve) == [100, 300], "each stage's accuracy at its step count"

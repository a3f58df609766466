"""The driver's MLflow copy of a search: off Tune's loop, in order, complete or redone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.tracking import COMPLETE_TAG, SearchTracker
from adacomp.platform.search.progress import ProgressView, SearchProgress
from adacomp.platform.search.search_run import SearchRun
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, Step

CONFIG = SearchConfig.model_validate(
    {
        "name": "logging",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
    }
)
BASELINE: dict[str, float | None] = {"accuracy": 0.99, "latency_pixel4": 1.0}


def _record(number: int) -> TrialRecord:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.1 + number / 100)]})
    return TrialRecord(
        number=number,
        plan=plan,
        metrics={"accuracy": 0.9, "latency_pixel4": 0.5},
        utility=0.4,
        violations=(),
    )


class _GatedTracker(SearchTracker):
    """A real sqlite store whose trial logging waits for a gate: a store slower than the trials."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.gate = threading.Event()
        self.logged: list[int] = []

    def log_trial(self, parent_id: str, record: TrialRecord, model_path: Path | None) -> str:
        assert self.gate.wait(60), "the test never opened the gate"
        self.logged.append(record.number)
        return super().log_trial(parent_id, record, model_path)


def test_a_finished_trial_is_logged_off_the_tune_loop_and_in_order(tmp_path: Path) -> None:
    tracker = _GatedTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "logging", tmp_path / "artifacts")
    parent = tracker.start_search(CONFIG, tmp_path, BASELINE)
    run = SearchRun(
        CONFIG, tmp_path, tracker, parent, BASELINE, ProgressView(SearchProgress(2), enabled=False)
    )

    run.record(_record(0), None)  # returns while the store is still busy: Tune starts the next trial
    run.record(_record(1), None)
    assert [r.number for r in run.ledger.load()] == [0, 1]  # the ledger, the truth, is written at once
    assert tracker.child_runs(parent) == {}

    tracker.gate.set()
    run.drain()
    children = tracker.child_runs(parent)
    assert sorted(children) == [0, 1] and run.unlogged == []
    assert tracker.logged == [0, 1]  # oldest first, each once
    starts = [MlflowClient(tracker.tracking_uri).get_run(children[n]).info.start_time for n in (0, 1)]
    assert starts[0] <= starts[1]


def test_a_child_with_more_params_than_one_mlflow_batch_is_complete(tmp_path: Path) -> None:
    """MLflow splits a batch over 100 params: the 'complete' tag still comes after all of them."""
    tracker = SearchTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "logging", tmp_path / "artifacts")
    parent = tracker.start_search(CONFIG, tmp_path, BASELINE)
    model = tmp_path / "abc.onnx"
    model.write_bytes(b"onnx bytes")
    params = {f"layer.block{i}": f"channel_prune(ratio={i / 300:.3f})" for i in range(150)}
    run_id = tracker.log_child(
        parent, 7, "trial-0007",
        tags={"adacomp.feasible": "true"}, params=params, metrics={"accuracy": 0.9, "latency": float("nan")},
        texts={"plan.json": "{}\n"}, files=[model], failed=False, finished_at=1_700_000_000.0,
        seconds=2.5, series=[("rung_accuracy", 0.5, 3), ("rung_accuracy", 0.8, 9)],
    )  # fmt: skip

    client = MlflowClient(tracker.tracking_uri)
    child = client.get_run(run_id)
    assert tracker.child_runs(parent) == {7: run_id}
    assert child.data.tags[COMPLETE_TAG] == "true" and child.info.status == "FINISHED"
    assert child.data.params == params
    assert child.data.metrics == {"accuracy": 0.9, "rung_accuracy": 0.8}  # NaN left out, the curve's last
    assert [m.step for m in client.get_metric_history(run_id, "rung_accuracy")] == [3, 9]
    assert {a.path for a in client.list_artifacts(run_id)} == {"plan.json", "abc.onnx"}
    # when it really ran: 2.5 s ending at finished_at (logged after the fact, not "now")
    assert (child.info.start_time, child.info.end_time) == (1_699_999_997_500, 1_700_000_000_000)

"""One run of a search, driver side: the ledger (the truth), MLflow (a copy that may lag, logged on
one background thread), the progress view, and Tune's callback that records each trial once."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from adacomp.errors import first_line
from adacomp.platform.results.front import (
    best_by_utility,
    normalised_hypervolume,
    pareto_front,
)
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.snapshot import (
    model_file,
)
from adacomp.platform.search.progress import ProgressView
from adacomp.platform.search.rungs import RungStore
from adacomp.platform.search_config import SearchConfig, silent
from adacomp.search_spaces import CompressionPlan


class SearchRun:
    """Driver-side state of one run of a search: ledger, tracker, progress.

    The ledger is written first and is the truth; MLflow is a copy that may lag. The copy is
    made on one background thread, in order: Tune's loop (which starts the next trial) never
    waits for the store, so a trial's logging costs the search no wall-clock time. When the store
    does not answer (a server restarting, a network cut), finished trials wait in `unlogged`
    and go out, oldest first, with the next trial or at the end of the search; nothing is
    lost and, because a half-logged child is deleted before it is logged again, nothing is
    doubled.
    """

    def __init__(
        self,
        config: SearchConfig,
        out_dir: Path,
        tracker: Any,
        parent_id: str,
        baseline: dict[str, float | None],
        progress: ProgressView,
        say: Callable[[str], None] = silent,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.ledger: Ledger[TrialRecord] = Ledger(out_dir / "trials.jsonl")
        self.records = self.ledger.load()
        self.tracker = tracker
        self.parent_id = parent_id
        self.baseline = baseline
        self.view = progress
        self.say = say
        # Plans evaluated (a failed one may be tried again) and plans being evaluated, by hash:
        # a proposal of either is no trial (see `define_by_run`). Ledgers written before
        # issue 20 may hold `duplicate_of` records: they are not evaluations.
        self.by_hash = {r.plan.hash: r for r in self.records if not r.failed and r.duplicate_of is None}
        self.in_flight: dict[str, int] = {}  # plan hash -> trial number
        self.rungs = RungStore(out_dir / "rungs")
        self.unlogged: list[TrialRecord] = []
        self.mlflow_down_since: float | None = None
        self._lock = threading.Lock()  # `unlogged` is appended here and drained by the logger
        self._logger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adacomp-mlflow")

    def record(self, record: TrialRecord, model_path: Path | None) -> None:
        if any(r.number == record.number for r in self.records):
            return  # Tune told us twice (complete after error); the first word stands
        self.ledger.append(record)  # first: a kill after this is reconciled on resume
        self.records.append(record)
        if self.in_flight.get(record.plan.hash) == record.number:
            del self.in_flight[record.plan.hash]
        if not record.failed:
            self.by_hash.setdefault(record.plan.hash, record)
        self.rungs.settle(record.plan.hash)
        with self._lock:
            self.unlogged.append(record)
        self._logger.submit(self.flush)
        self._progress(record)

    def drain(self) -> None:
        """Waits until the logger has tried every trial and progress point handed to it."""
        self._logger.shutdown(wait=True)

    def flush(self, strict: bool = False) -> bool:
        """Logs the trials MLflow lacks, oldest first; False while the store does not answer
        (`strict`: raises what the store said instead)."""
        try:
            if self.mlflow_down_since is not None:  # what made it before the cut, and tidy up
                logged = self.tracker.child_runs(self.parent_id)
                with self._lock:
                    self.unlogged = [r for r in self.unlogged if r.number not in logged]
            while self.unlogged:
                record = self.unlogged[0]
                self.tracker.log_trial(self.parent_id, record, self._model(record))
                with self._lock:
                    self.unlogged.pop(0)
        except Exception as exc:  # the store is away: keep the trials, say so once
            if self.mlflow_down_since is None:
                self.mlflow_down_since = time.time()
                self.say(
                    f"MLflow at {self.tracker.tracking_uri} does not answer ({first_line(exc)}); "
                    "trials stay in the ledger and are logged when it is back"
                )
            if strict:
                raise
            return False
        if self.mlflow_down_since is not None:
            away = time.time() - self.mlflow_down_since
            self.say(f"MLflow is back after {away:.0f} s; every finished trial is logged")
            self.mlflow_down_since = None
        return True

    def log_progress(self, step: int, values: Mapping[str, float | None]) -> None:
        """A point of the progress curves, logged in turn by the logger thread."""
        self._logger.submit(self._log_progress, step, dict(values))

    def _log_progress(self, step: int, values: Mapping[str, float | None]) -> None:
        """Progress curves are derived from the ledger: a point lost while MLflow is away is skipped."""
        if self.mlflow_down_since is not None:
            return
        try:
            self.tracker.log_progress(self.parent_id, step=step, values=dict(values))
        except Exception:
            self.flush()  # notices and reports the outage

    def _progress(self, record: TrialRecord) -> None:
        p = self.view.progress
        p.done = len(self.records)
        p.done_this_run += 1
        p.failed = sum(r.failed for r in self.records)
        p.running = max(0, p.running - 1)
        p.front_size = len(pareto_front(self.config, self.records))
        best = best_by_utility(self.records)
        p.best_utility = best.utility if best else None
        p.hypervolume = normalised_hypervolume(self.config, self.records, self.baseline)
        self.log_progress(
            p.done,
            {
                "hypervolume": p.hypervolume,
                "front_size": float(p.front_size),
                "best_utility": p.best_utility,
                "trials_done": float(p.done),
                "trials_failed": float(p.failed),
            },
        )
        self.view.trial_finished(describe_trial(record))

    def reconcile(self) -> int:
        """Logs ledger trials MLflow lacks (a kill between the two); returns how many."""
        logged = self.tracker.child_runs(self.parent_id)
        self.unlogged = [r for r in self.records if r.number not in logged]
        missing = len(self.unlogged)
        self.flush()
        return missing

    def _model(self, record: TrialRecord) -> Path | None:
        path = model_file(self.out_dir, record.plan)
        return path if path.exists() else None


def describe_trial(record: TrialRecord) -> str:
    if record.failed:
        return f"trial {record.number}: failed - {record.reason}"
    accuracy = record.metrics.get("accuracy")
    acc = f"acc {100 * accuracy:.2f}%" if isinstance(accuracy, float) else "acc -"
    state = "feasible" if record.feasible else "infeasible"
    if record.reason:
        state = f"infeasible ({record.reason})"
    utility = "-" if record.utility is None else f"{record.utility:.4f}"
    return f"trial {record.number}: {acc}, utility {utility}, {state}, {record.seconds:.1f} s"


class TrialRecorder(Callback):
    """Tune's driver-side hook: every finished or crashed trial is recorded exactly once."""

    def __init__(self, run: SearchRun) -> None:
        self.run: SearchRun | None = run

    def __getstate__(self) -> dict[str, Any]:
        return {"run": None}  # Tune pickles its callbacks with the tuner; ours live in the driver

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.run is not None:
            self.run.view.progress.running += 1
            self.run.view.refresh()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.run is not None and "trial_number" in trial.config:
            _record_completed(self.run, trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.run is not None and "trial_number" in trial.config:
            _record_crashed(self.run, trial)


def _record_completed(run: SearchRun, trial: Any) -> None:
    result = trial.last_result or {}
    if "record" not in result:  # the trial ended without reporting: treat it as a crash
        _record_crashed(run, trial)
        return
    record = TrialRecord.from_dict(result["record"])
    model_path = None
    checkpoint = trial.checkpoint
    if checkpoint is not None and not record.failed:
        source = Path(checkpoint.path) / "model.onnx"
        if source.exists():
            model_path = model_file(run.out_dir, record.plan)
            model_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, model_path)
    run.record(record, model_path)


def _record_crashed(run: SearchRun, trial: Any) -> None:
    error = getattr(trial, "error_file", None)
    detail = "its worker process died"
    if error and Path(error).exists():
        lines = [ln for ln in Path(error).read_text().splitlines() if ln.strip()]
        detail = lines[-1][:300] if lines else detail
    record = TrialRecord(
        number=int(trial.config["trial_number"]),
        plan=CompressionPlan.from_json(trial.config["plan"]),
        metrics={},
        utility=None,
        violations=(),
        failed=True,
        reason=f"trial crashed: {detail}",
    )
    run.record(record, None)

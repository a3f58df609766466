"""The end of a search: the front's files, MLflow (front, polished numbers, the registered best,
descriptions), each MLflow step retried until the store answers or `mlflow_wait_s` passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError, first_line
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.mlflow_ui import FRONT_VIEW_TAG, display_metrics
from adacomp.platform.results.snapshot import (
    SearchResult,
    SearchSnapshot,
    with_polished,
)
from adacomp.platform.search.search_run import SearchRun
from adacomp.platform.search_config import SearchConfig


def finish(
    config: SearchConfig,
    out_dir: Path,
    run: SearchRun,
    polished: Sequence[TrialRecord],
    tracker: Any,
    parent_id: str,
    baseline: dict[str, float | None],
    tracking_uri: str,
    started: float,
) -> SearchResult:
    """The front computed once (the snapshot), written as files, then published to MLflow."""
    snapshot = SearchSnapshot(
        config=config,
        baseline=baseline,
        records=with_polished(run.records, polished),
        run_id=parent_id,
        tracking_uri=tracking_uri,
        out_dir=out_dir,
    )
    files = _front_files(snapshot, out_dir)
    registered = _publish(snapshot, run, tracker, files, polished)
    return SearchResult(
        **{f.name: getattr(snapshot, f.name) for f in fields(SearchSnapshot)},
        registered_model=registered,
        seconds=time.perf_counter() - started,
    )


def _front_files(snapshot: SearchSnapshot, out_dir: Path) -> list[Path]:
    """front.csv, front.parquet, front.md, pareto.png and pareto.html, from the one snapshot."""
    from adacomp.platform.results.descriptions import front_markdown
    from adacomp.platform.results.plots import pareto_html, pareto_png

    config, records, baseline = snapshot.config, snapshot.records, snapshot.baseline
    table = snapshot.front
    files = [out_dir / "front.csv", out_dir / "front.parquet", out_dir / "front.md"]
    table.to_csv(files[0], index=False)
    table.to_parquet(files[1], index=False)
    files[2].write_text(front_markdown(snapshot) + "\n")
    files.append(pareto_png(config, records, baseline, out_dir / "pareto.png"))
    files.append(pareto_html(config, records, baseline, out_dir / "pareto.html"))
    return files


def _publish(
    snapshot: SearchSnapshot, run: SearchRun, tracker: Any, files: list[Path], polished: Sequence[TrialRecord]
) -> str | None:
    """Trials, front, polished numbers, the registered best and the descriptions, each MLflow step
    patient; returns the registered model's `models:/` URI (None when nothing was registered)."""
    from adacomp.platform.results.descriptions import version_description

    parent_id, records, front = snapshot.run_id, snapshot.records, snapshot.front_records
    assert parent_id is not None
    patient = PatientMlflow(run, snapshot.config.output.mlflow_wait_s)
    patient.call("logging the trials", lambda: run.flush(strict=True))
    summary = {
        "hypervolume_final": snapshot.hypervolume,
        "front_size_final": float(len(front)),
        "trials_failed_final": float(sum(r.failed for r in records)),
    }
    children = patient.call(
        "logging the front", lambda: tracker.log_front(parent_id, files, [r.number for r in front], summary)
    )
    patient.call("logging the polished numbers", lambda: _log_polished(tracker, children, polished))
    registered = None
    best = snapshot.best
    if best is not None and snapshot.model_path(best).exists():
        trial_run = children.get(best.number, parent_id)
        path = snapshot.model_path(best)
        about = version_description(snapshot, best, tracker.experiment_id, trial_run)
        name = snapshot.config.name
        registered = patient.call(
            "registering the best model",
            lambda: tracker.register_best(parent_id, trial_run, best, path, name, about),
        )
    describe = lambda: _describe_in_mlflow(tracker, snapshot, children, registered)  # noqa: E731
    patient.call("describing the search", describe)
    patient.call("closing the search's run", lambda: tracker.finish(parent_id))
    return registered


def _describe_in_mlflow(
    tracker: Any, snapshot: SearchSnapshot, children: Mapping[int, str], registered: str | None
) -> None:
    """What leads a user to the result in the MLflow UI: the front's saved runs view, the parent
    run's description (the front, linked) and the experiment's (the latest search)."""
    from adacomp.platform.results.descriptions import experiment_description, search_description
    from adacomp.platform.results.mlflow_ui import front_view

    assert snapshot.run_id is not None
    keys = [o.key for o in snapshot.config.objectives]
    key = tracker.save_view(front_view(keys, snapshot.run_id))
    experiment = tracker.experiment_id
    tracker.describe_run(snapshot.run_id, search_description(snapshot, experiment, children, key, registered))
    tracker.describe_experiment(
        experiment_description(snapshot.config.output.experiment, snapshot, experiment, key)
    )
    tracker.set_tags(snapshot.run_id, {FRONT_VIEW_TAG: key})


def _log_polished(tracker: Any, children: Mapping[int, str], polished: Sequence[TrialRecord]) -> None:
    """Each polished plan's numbers next to its trial's own, in its child run."""
    for record in polished:
        if record.number in children:
            values = {
                **record.metrics,
                "utility": record.utility,
                "trial_seconds": record.seconds,
                **{f"violation_{i}": v for i, v in enumerate(record.violations)},
            }
            metrics = {f"polished_{k}": v for k, v in values.items()}
            # the runs list shows the numbers that count: the polished ones
            metrics.update(display_metrics(record.metrics, record.utility))
            tracker.log_metrics(children[record.number], metrics)
            tracker.set_tags(children[record.number], {"adacomp.polished": "true"})


class PatientMlflow:
    """The end of a search: each MLflow step is retried until the store answers or `wait_s`
    passes; then one clear error says where the results are (the ledger, the front files)."""

    def __init__(self, run: SearchRun, wait_s: float) -> None:
        self.run, self.wait_s = run, wait_s
        self.deadline = time.monotonic() + wait_s

    def call(self, what: str, step: Callable[[], Any]) -> Any:
        delay = 1.0
        while True:
            try:
                return step()
            except Exception as exc:
                refused = _refused_by_mlflow(exc)  # the store answered "no": waiting changes nothing
                if refused or time.monotonic() >= self.deadline:
                    if refused:
                        raise AdacompError(
                            f"output.tracking_uri: MLflow at {self.run.tracker.tracking_uri} refused "
                            f"{what} ({first_line(exc)}); every trial is in {self.run.ledger.path} "
                            f"and the front in {self.run.out_dir}"
                        ) from exc
                    raise AdacompError(
                        f"output.tracking_uri: MLflow at {self.run.tracker.tracking_uri} did not answer "
                        f"for {self.wait_s:.0f} s while {what} ({first_line(exc)}); every trial is in "
                        f"{self.run.ledger.path} and the front in {self.run.out_dir}; run the search "
                        "again with resume=True to log the rest"
                    ) from exc
                self.run.say(f"MLflow does not answer while {what}; retrying in {delay:.0f} s")
                time.sleep(min(delay, max(0.0, self.deadline - time.monotonic())))
                delay = min(30.0, delay * 2)


def _refused_by_mlflow(exc: Exception) -> bool:
    """An MLflow error that says the request itself is wrong (an invalid name or value), not
    that the store is away: retried for `mlflow_wait_s`, it would only fail again."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == "INVALID_PARAMETER_VALUE"

"""A night's report is one MLflow run, updated in place when the night is reported again
(issue 20, item 5), on a real MLflow sqlite store; no search runs here."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from adacomp.platform.ops.nightly import NIGHT_TAG, Change, NightSummary, _log_report
from adacomp.platform.results.tracking import KIND_TAG, SearchTracker
from adacomp.platform.search_config import SearchConfig


def _config(out: Path) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": "nightly",
            "task": "digits",
            "targets": ["pixel4"],
            "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
            "output": {"dir": str(out)},
        }
    )


def _night(date: str, run_id: str) -> NightSummary:
    return NightSummary(date, 1, "", run_id, 2, 2, {}, (), ())


def _reports(uri: str, date: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("adacomp")
    assert experiment is not None
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = 'nightly-report' and tags.`{NIGHT_TAG}` = '{date}'",
    )


def test_reporting_a_night_again_updates_its_one_report_run(tmp_path: Path) -> None:
    config = _config(tmp_path / "runs")
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    report = tmp_path / "report-2026-01-02.md"
    last, tonight = _night("2026-01-01", "a"), _night("2026-01-02", "b")
    report.write_text("first")
    ok = [Change("hypervolume", 0.5, 0.49, regression=False)]
    first = _log_report(config, uri, tonight, last, ok, report)
    report.write_text("again")
    worse = [Change("hypervolume", 0.5, 0.3, regression=True)]
    again = _log_report(config, uri, tonight, last, worse, report)

    assert again == first
    (run,) = _reports(uri, "2026-01-02")
    assert run.info.run_id == first and run.info.status == "FAILED"  # the latest report's verdict
    assert run.data.tags["adacomp.regressions"] == "1"
    assert run.data.metrics["hypervolume.tonight"] == pytest.approx(0.3)
    assert run.data.metrics["regressions"] == 1.0
    client = mlflow.MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(first)] == ["report-2026-01-02.md"]
    local = Path(client.download_artifacts(first, "report-2026-01-02.md", str(tmp_path / "dl")))
    assert local.read_text() == "again"
    other = _log_report(config, uri, _night("2026-01-03", "c"), tonight, ok, report)
    assert other != first and len(_reports(uri, "2026-01-03")) == 1  # another night: its own run


def test_duplicate_report_runs_of_a_night_are_folded_into_the_first(tmp_path: Path) -> None:
    """Earlier versions added a run per re-run: the next report keeps the oldest, deletes the rest."""
    config = _config(tmp_path / "runs")
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    tracker = SearchTracker.for_config(config, uri)
    tags = {KIND_TAG: "nightly-report", "adacomp.search": "nightly", NIGHT_TAG: "2026-01-02"}
    old = [tracker.start_run("nightly-nightly-2026-01-02", tags, start_ms=1000 + i) for i in range(2)]
    report = tmp_path / "report-2026-01-02.md"
    report.write_text("report")
    run_id = _log_report(config, uri, _night("2026-01-02", "b"), None, [], report)
    assert run_id == old[0]
    assert [r.info.run_id for r in _reports(uri, "2026-01-02")] == [old[0]]
    assert mlflow.MlflowClient(uri).get_run(old[1]).info.lifecycle_stage == "deleted"

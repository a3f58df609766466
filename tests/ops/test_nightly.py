"""`adacomp nightly` over three nights on one machine (real Ray, Optuna journal, MLflow sqlite):
the second night warm-starts from the first, the third finds its device got slower."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.ops.nightly import EXIT_REGRESSION, NightlyResult, NightSummary, compare, nightly
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import load_search_config
from adacomp.search_spaces import CompressionPlan

DUPLICATE_ATTR = "adacomp:duplicate_of"  # optuna_searcher's mark on a proposal asked past
pytestmark = pytest.mark.slow


def _write(directory: Path, profile: str) -> Path:
    """A nightly config whose one target, `phone`, is emulated from `profile`."""
    (directory / "farm.yaml").write_text(
        yaml.safe_dump(
            {"devices": [{"name": "phone", "kind": "emulated", "class": "phone", "profile": profile}]}
        )
    )
    config = {
        "name": "nightly",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["phone"],
        "farm": "farm.yaml",
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "phone"},
            {"metric": "storage"},
        ],
        "constraints": [{"metric": "accuracy_drop", "max": 40}],
        "finetune": {"steps": 5},
        "trials": 2,
        "concurrency": 2,
        "strategy": "nsga2",
        "seed": 1,
        "output": {"dir": str(directory / "runs")},
    }
    path = directory / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, shared_ray: str) -> tuple[Path, list[NightlyResult]]:
    """Two nights, each search joining the suite's shared Ray."""
    directory = tmp_path_factory.mktemp("nightly")
    path = _write(directory, "pixel4")
    first = nightly(path, date="2026-01-01", threshold=0.3)
    second = nightly(path, date="2026-01-02", threshold=0.3)
    return path, [first, second]


def test_the_first_night_has_nothing_to_compare_with(nights: tuple[Path, list[NightlyResult]]) -> None:
    _, (first, _) = nights
    assert first.last is None and first.changes == [] and first.tonight.trials == 2
    assert "First night" in first.report_path.read_text()


def test_the_second_night_starts_from_the_first_ones_front_and_study(
    nights: tuple[Path, list[NightlyResult]],
) -> None:
    _, (first, second) = nights
    assert second.last is not None and second.last.date == "2026-01-01"
    tonight = sorted(second.tonight.records, key=lambda r: r.number)
    front = [CompressionPlan.from_json(p).hash for p in first.tonight.front]
    assert [r.plan.hash for r in tonight[: len(front)]] == front  # re-measured first
    journal = Path(second.tonight.search_dir).parent / "optuna.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="adacomp-nightly-nightly", storage=storage)
    # One study, both nights: the sampler saw everything. A proposal of a plan evaluated before
    # is a study trial too, told as a duplicate and asked past (issue 20); whether NSGA-II makes
    # one depends on which of two concurrent trials finished first, so those are counted apart.
    repeats = [t.user_attrs[DUPLICATE_ATTR] for t in study.trials if DUPLICATE_ATTR in t.user_attrs]
    evaluated = {t.number for t in study.trials if DUPLICATE_ATTR not in t.user_attrs}
    assert len(evaluated) == 4 and set(repeats) <= evaluated, repeats
    # Tonight's trials number on from last night's in the one study (2 and 3, or past a repeat).
    tonights = {n for n in evaluated if n >= 2}
    assert {r.number for r in tonight} == tonights and min(tonights) == 2 and len(tonights) == 2
    text = second.report_path.read_text()
    assert "Compared with 2026-01-01" in text and "phone: best feasible latency" in text


def test_each_report_is_an_mlflow_run_beside_the_nights(nights: tuple[Path, list[NightlyResult]]) -> None:
    path, (_, second) = nights
    config = load_search_config(path)
    client = mlflow.MlflowClient(f"sqlite:///{config.output.dir / 'mlflow.db'}")
    run = client.get_run(second.report_run_id)
    assert run.data.tags["adacomp.kind"] == "nightly-report"
    assert run.data.tags["adacomp.previous_night"] == "2026-01-01"
    assert "hypervolume.tonight" in run.data.metrics
    assert [a.path for a in client.list_artifacts(second.report_run_id)] == ["report-2026-01-02.md"]
    night = client.get_run(second.tonight.run_id)  # tonight's search: its own parent run
    assert night.data.tags["adacomp.search"] == "nightly-2026-01-02"


def test_running_the_same_night_again_only_reports_again(nights: tuple[Path, list[NightlyResult]]) -> None:
    path, (_, second) = nights
    again = nightly(path, date="2026-01-02", threshold=0.3)
    assert again.tonight.run_id == second.tonight.run_id and again.tonight.trials == 2
    assert again.report_run_id == second.report_run_id  # one report run per night, updated
    config = load_search_config(path)
    client = mlflow.MlflowClient(f"sqlite:///{config.output.dir / 'mlflow.db'}")
    reports = client.search_runs(
        [client.get_run(second.report_run_id).info.experiment_id],
        filter_string="tags.`adacomp.kind` = 'nightly-report' and tags.`adacomp.night` = '2026-01-02'",
    )
    assert [r.info.run_id for r in reports] == [second.report_run_id]


def test_a_slower_device_is_a_regression_and_a_non_zero_exit(
    nights: tuple[Path, list[NightlyResult]],
) -> None:
    path, _ = nights
    _write(path.parent, "snapdragon450")  # the phone got an update that made it slower
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["nightly", str(path), "--date", "2026-01-03", "--threshold", "0.3"])
    assert code == EXIT_REGRESSION, stderr.getvalue()[-2000:]
    assert "phone: best feasible latency (ms)" in stderr.getvalue()
    assert "REGRESSION" in stdout.getvalue()


def _night(date: str, latency: float, accuracy: float) -> NightSummary:
    record = TrialRecord(
        number=0,
        plan=CompressionPlan(),
        metrics={"accuracy": accuracy, "latency_phone": latency, "storage": 1000.0, "accuracy_drop": 0.0},
        utility=1.0,
        violations=(),
    )
    baseline = {"accuracy": 0.9, "latency_phone": 1.0, "storage": 2000.0}
    return NightSummary(date, 0, "", "", 1, 1, baseline, (record,), ())


def test_compare_flags_only_drops_beyond_the_threshold(tmp_path: Path) -> None:
    config = load_search_config(_write(tmp_path, "pixel4"))
    last = _night("2026-01-01", latency=0.5, accuracy=0.9)
    same = compare(config, last, _night("2026-01-02", latency=0.52, accuracy=0.9), threshold=0.05)
    assert not any(c.regression for c in same)
    slower = compare(config, last, _night("2026-01-02", latency=0.6, accuracy=0.9), threshold=0.05)
    assert [c.what for c in slower if c.regression] == [
        "hypervolume",
        "phone: hypervolume (accuracy x latency)",
        "phone: best feasible latency (ms)",
    ]
    with pytest.raises(AdacompError, match="date: expected YYYY-MM-DD"):
        nightly(config, date="yesterday")

"""A search's results and reading them back: from its directory, or from its MLflow run.

No Ray, Tune or Optuna here: `adacomp pareto` reads a finished or running search without them
(the ledger is appended one whole line per trial, so a reader sees every trial finished so far).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adacomp.errors import AdacompError
from adacomp.platform.results.front import best_by_utility, front_rows, normalised_hypervolume, pareto_front
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.mlflow_ui import is_display_metric
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan

if TYPE_CHECKING:
    import pandas as pd

STATE_FILE = "search.json"
POLISHED_FILE = "polished.jsonl"  # the front's plans after the polish (search/polish.py)


def model_file(out_dir: Path, plan: CompressionPlan) -> Path:
    """Where a search keeps a trial's ONNX model (one file per plan)."""
    return out_dir / "models" / f"{plan.hash}.onnx"


def polished_model_file(out_dir: Path, plan: CompressionPlan) -> Path:
    """Where a search keeps a plan's model after the polish (the trial's stays as it was)."""
    return out_dir / "models" / "polished" / f"{plan.hash}.onnx"


def with_polished(records: Sequence[TrialRecord], polished: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials, each polished one with its polished numbers: what a search's front is made of."""
    by_number = {p.number: p for p in polished}
    return [by_number.get(r.number, r) for r in sorted(records, key=lambda r: r.number)]


@dataclass(frozen=True)
class SearchSnapshot:
    """A search's trials so far, with everything derived from them."""

    config: SearchConfig
    baseline: dict[str, float | None]
    records: list[TrialRecord]
    run_id: str | None
    tracking_uri: str | None
    out_dir: Path | None

    @cached_property
    def front_records(self) -> list[TrialRecord]:
        return pareto_front(self.config, self.records)

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front (feasible trials), uncompressed baseline first."""
        import pandas as pd

        return pd.DataFrame(front_rows(self.config, self.records, self.baseline))

    @cached_property
    def hypervolume(self) -> float:
        return normalised_hypervolume(self.config, self.records, self.baseline)

    @property
    def best(self) -> TrialRecord | None:
        """The best feasible trial by the usage's utility."""
        return best_by_utility(self.records)

    @property
    def best_plan(self) -> CompressionPlan | None:
        return self.best.plan if self.best else None

    def model_path(self, record: TrialRecord) -> Path:
        if self.out_dir is None:
            raise AdacompError(
                f"search {self.config.name!r} was read from MLflow: its models are artifacts there"
            )
        if record.polished:
            return polished_model_file(self.out_dir, record.plan)
        return model_file(self.out_dir, record.plan)

    def table(self) -> str:
        return format_front(self.config, self.records, self.baseline)

    def summary(self) -> str:
        failed = sum(r.failed for r in self.records)
        return (
            f"search {self.config.name!r}: {len(self.records)}/{self.config.trials} trials finished, "
            f"{failed} failed, {len(self.front_records)} on the front, hypervolume {self.hypervolume:.4f}"
        )


def _find_search_dir(path: Path) -> Path:
    if (path / STATE_FILE).exists():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{STATE_FILE}"))
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise AdacompError(f"{path}: holds several searches ({names}); name one of them")
    raise AdacompError(f"{path}: no search here (expected {STATE_FILE} from `adacomp search`)")


def open_search_dir(path: Path) -> SearchSnapshot:
    directory = _find_search_dir(path)
    state = JobDir(directory, STATE_FILE, "search").load()
    return SearchSnapshot(
        config=SearchConfig.model_validate(state["config"]),
        baseline=state["baseline"],
        records=with_polished(
            Ledger(directory / "trials.jsonl").load(), Ledger(directory / POLISHED_FILE).load()
        ),
        run_id=state.get("parent_run_id"),
        tracking_uri=state.get("tracking_uri"),
        out_dir=directory,
    )


def open_search_run(run_id: str, tracking_uri: str) -> SearchSnapshot:
    """From MLflow alone: the parent's config artifact and baseline, the children's results."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from adacomp.platform.results.tracking import DIR_TAG, TRIAL_TAG

    client = MlflowClient(tracking_uri)
    try:
        parent = client.get_run(run_id)
    except MlflowException:
        raise AdacompError(f"run {run_id!r}: not found in the tracking store {tracking_uri}") from None
    directory = parent.data.tags.get(DIR_TAG)
    if directory and (Path(directory) / STATE_FILE).exists():
        return open_search_dir(Path(directory))
    with tempfile.TemporaryDirectory() as tmp:
        config_path = client.download_artifacts(run_id, "search_config.json", tmp)
        config = SearchConfig.model_validate_json(Path(config_path).read_text())
        baseline: dict[str, float | None] = {
            k.removeprefix("baseline_"): v
            for k, v in parent.data.metrics.items()
            if k.startswith("baseline_")
        }
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'",
            max_results=50_000,
        )
        records = []
        for child in children:
            tags, metrics = child.data.tags, child.data.metrics
            if TRIAL_TAG not in tags:
                continue
            plan_path = client.download_artifacts(child.info.run_id, "plan.json", tmp)
            records.append(_record_from_run(tags, metrics, CompressionPlan.load(plan_path), child))
    return SearchSnapshot(
        config=config,
        baseline=baseline,
        records=sorted(records, key=lambda r: r.number),
        run_id=run_id,
        tracking_uri=tracking_uri,
        out_dir=None,
    )


def _record_from_run(
    tags: dict[str, str], metrics: dict[str, float], plan: CompressionPlan, run: Any
) -> TrialRecord:
    """A trial as its child run has it; with the polished numbers where the polish logged some."""
    polished = tags.get("adacomp.polished") == "true"
    if polished:
        metrics = {k.removeprefix("polished_"): v for k, v in metrics.items() if k.startswith("polished_")}
    numbered = [
        (int(k.removeprefix("violation_")), v) for k, v in metrics.items() if k.startswith("violation_")
    ]
    violations = tuple(v for _, v in sorted(numbered))
    skip = {"utility", "feasible", "failed", "trial_seconds", "rung_accuracy", "rung_score"}
    stopped = tags.get("adacomp.stopped_at_rung")
    return TrialRecord(
        number=int(tags["adacomp.trial"]),
        plan=plan,
        metrics={
            k: v
            for k, v in metrics.items()
            if k not in skip and not k.startswith("violation_") and not is_display_metric(k)
        },
        utility=metrics.get("utility"),
        violations=violations,
        failed=tags.get("adacomp.failed") == "true",
        reason=tags.get("adacomp.failure_reason") or tags.get("adacomp.stop_reason"),
        seconds=metrics.get("trial_seconds", 0.0),
        duplicate_of=int(tags["adacomp.duplicate_of"]) if "adacomp.duplicate_of" in tags else None,
        finished_at=(run.info.end_time or run.info.start_time) / 1000,
        stopped_at=int(stopped) if stopped is not None else None,
        polished=polished,
    )


def open_search(run_or_dir: str | Path, tracking_uri: str | None = None) -> SearchSnapshot:
    """A search directory (or the output dir holding one search), or an MLflow run id."""
    path = Path(run_or_dir)
    if path.exists():
        return open_search_dir(path)
    if tracking_uri is None:
        from adacomp.platform.results.tracking import default_tracking_uri

        tracking_uri = default_tracking_uri(Path("runs"))
    return open_search_run(str(run_or_dir), tracking_uri)


@dataclass(frozen=True)
class SearchResult(SearchSnapshot):
    """What `search()` returns: the snapshot at the end, the registered model, the wall time."""

    registered_model: str | None = None
    seconds: float = 0.0


def format_front(config: SearchConfig, records: list[TrialRecord], baseline: dict[str, float | None]) -> str:
    """The front as a terminal table: baseline first, accuracy in %, storage in KiB.

    The trial the usage's utility picks (the one a search registers) is marked with `*`. The
    utility may weigh costs the objectives do not (every target's latency, say), so that trial
    can be dominated in the objectives printed here: it is then added below the front, so the
    table always shows what was registered."""
    from adacomp.platform.table import format_table, kib

    rows = front_rows(config, records, baseline)
    headers = [h for h in rows[0] if h != "plan_hash"]
    best = best_by_utility(records)
    footnote = ""
    if best is not None:
        marked = [row for row in rows if row["trial"] == str(best.number)]
        if not marked:
            marked = front_rows(config, [best], baseline)[1:]
            marked[0]["trial"] = f"{best.number} (off the front)"
            rows = rows + marked
        marked[0]["trial"] = f"{marked[0]['trial']} *"
        footnote = "\n* best feasible by the usage's utility (what the search registers)"

    def cell(key: str, value: Any) -> Any:
        if value is None:
            return "-"
        if key == "accuracy":
            return f"{100 * value:.2f}%"
        if key.startswith("storage"):
            return f"{kib(value)} KiB"
        if key == "plan" and len(value) > 70:
            return value[:67] + "..."
        return value

    table = format_table(
        [h.replace("storage (B)", "storage") for h in headers],
        [[cell(h, row[h]) for h in headers] for row in rows],
    )
    return table + footnote

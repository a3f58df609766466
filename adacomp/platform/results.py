"""Reading a search back: from its directory, or from its MLflow run when the directory is elsewhere.

Works on a running search too: the ledger is appended one whole line per trial, so a reader
sees every trial finished so far.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adacomp.errors import AdacompError
from adacomp.platform.front import front_rows, normalised_hypervolume, pareto_front
from adacomp.platform.ledger import Ledger, TrialRecord
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan

if TYPE_CHECKING:
    import pandas as pd

STATE_FILE = "search.json"


@dataclass(frozen=True)
class SearchSnapshot:
    config: SearchConfig
    baseline: dict[str, float | None]
    records: list[TrialRecord]
    run_id: str | None
    tracking_uri: str | None
    out_dir: Path | None

    @property
    def front_records(self) -> list[TrialRecord]:
        return pareto_front(self.config, self.records)

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front (feasible trials), uncompressed baseline first."""
        import pandas as pd

        return pd.DataFrame(front_rows(self.config, self.records, self.baseline))

    @property
    def hypervolume(self) -> float:
        return normalised_hypervolume(self.config, self.records, self.baseline)

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
    state = json.loads((directory / STATE_FILE).read_text())
    return SearchSnapshot(
        config=SearchConfig.model_validate(state["config"]),
        baseline=state["baseline"],
        records=Ledger(directory / "trials.jsonl").load(),
        run_id=state.get("parent_run_id"),
        tracking_uri=state.get("tracking_uri"),
        out_dir=directory,
    )


def open_search_run(run_id: str, tracking_uri: str) -> SearchSnapshot:
    """From MLflow alone: the parent's config artifact and baseline, the children's results."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from adacomp.platform.tracking import DIR_TAG, TRIAL_TAG

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
    numbered = [
        (int(k.removeprefix("violation_")), v) for k, v in metrics.items() if k.startswith("violation_")
    ]
    violations = tuple(v for _, v in sorted(numbered))
    skip = {"utility", "feasible", "failed", "trial_seconds"}
    return TrialRecord(
        number=int(tags["adacomp.trial"]),
        plan=plan,
        metrics={k: v for k, v in metrics.items() if k not in skip and not k.startswith("violation_")},
        utility=metrics.get("utility"),
        violations=violations,
        failed=tags.get("adacomp.failed") == "true",
        reason=tags.get("adacomp.failure_reason"),
        seconds=metrics.get("trial_seconds", 0.0),
        duplicate_of=int(tags["adacomp.duplicate_of"]) if "adacomp.duplicate_of" in tags else None,
        finished_at=run.info.start_time / 1000,
    )


def open_search(run_or_dir: str | Path, tracking_uri: str | None = None) -> SearchSnapshot:
    """A search directory (or the output dir holding one search), or an MLflow run id."""
    path = Path(run_or_dir)
    if path.exists():
        return open_search_dir(path)
    if tracking_uri is None:
        from adacomp.platform.tracking import default_tracking_uri

        tracking_uri = default_tracking_uri(Path("runs"))
    return open_search_run(str(run_or_dir), tracking_uri)

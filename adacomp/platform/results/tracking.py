"""MLflow tracking of a search: a parent run, one child run per trial, the front, the winner.

Only the driver logs (trials report to Tune; Tune's callback hands results here), through
`MlflowClient` with explicit run ids: no global "active run", safe to call from callbacks.
Child runs carry `adacomp.trial` so a resumed search can tell which trials are already logged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import SearchConfig

TRIAL_TAG = "adacomp.trial"
SEARCH_TAG = "adacomp.search"
DIR_TAG = "adacomp.dir"
FRONT_TAG = "adacomp.pareto"
COMPLETE_TAG = "adacomp.complete"
MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def seed_new_sqlite_store(tracking_uri: str, cache_dir: Path | None = None) -> None:
    """Creating an MLflow sqlite store runs every schema migration MLflow ever shipped: 3.5 s
    here, paid by every new search, supernet or nightly run. The empty, migrated database is the
    same every time for one MLflow version, so it is built once in the cache and copied (0.07 s).
    The copy's Default experiment gets the artifact location MLflow itself would have given it.
    Existing stores, servers and other databases are left alone; where the cache cannot be
    written, MLflow creates the store itself, as before."""
    if not tracking_uri.startswith("sqlite:///") or "?" in tracking_uri:
        return
    target = Path(tracking_uri.removeprefix("sqlite:///"))
    if target.exists() or not target.parent.is_dir():
        return
    from adacomp.tasks.pretrained import default_cache_dir

    template = (cache_dir or default_cache_dir()) / "mlflow" / f"empty-store-{mlflow.__version__}.db"
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    scratch = template.with_name(f"{template.name}.{os.getpid()}.tmp")
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            MlflowClient(f"sqlite:///{scratch}").search_experiments()  # creates and migrates it
            os.replace(scratch, template)
        shutil.copyfile(template, staged)
        with contextlib.closing(sqlite3.connect(staged)) as db, db:
            db.execute(
                "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ?"
                " WHERE experiment_id = 0",
                (str(Path.cwd() / "mlruns" / "0"), _now_ms(), _now_ms()),
            )
        os.link(staged, target)  # never replaces a store another process created meanwhile
    except (OSError, sqlite3.Error):
        pass  # FileExistsError included: someone else's store is there now, and it stays
    finally:
        staged.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a template build that failed half-way
            scratch.unlink(missing_ok=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _metrics(values: Mapping[str, float | None], prefix: str = "", step: int = 0) -> list[Metric]:
    now = _now_ms()
    return [
        Metric(f"{prefix}{k}", float(v), now, step)
        for k, v in values.items()
        if isinstance(v, (int, float)) and math.isfinite(v)
    ]


class SearchTracker:
    @classmethod
    def for_config(cls, config: SearchConfig, recorded_uri: str | None = None) -> SearchTracker:
        """The config's store: `output.tracking_uri`, else the one a job recorded, else sqlite in
        `output.dir` (artifacts beside it)."""
        uri = config.output.tracking_uri or recorded_uri or default_tracking_uri(config.output.dir)
        return cls(uri, config.output.experiment, config.output.dir.resolve() / "mlartifacts")

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path) -> None:
        self.tracking_uri = tracking_uri
        seed_new_sqlite_store(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = None  # a server's own artifact root
            if tracking_uri.startswith("sqlite"):  # a local store: artifacts beside the database
                artifact_root.mkdir(parents=True, exist_ok=True)
                location = artifact_root.resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    # --- the parent run ----------------------------------------------------------------------
    def start_search(self, config: SearchConfig, out_dir: Path, baseline: Mapping[str, float | None]) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=config.name,
            tags={
                SEARCH_TAG: config.name,
                DIR_TAG: str(out_dir.resolve()),
                "adacomp.strategy": config.strategy,
            },
        )
        run_id: str = run.info.run_id
        params = {
            "task": config.task,
            "strategy": config.strategy,
            "trials": config.trials,
            "concurrency": config.concurrency,
            "seed": config.seed,
            "targets": ",".join(config.targets),
            "objectives": ", ".join(f"{o.key}:{o.mode}" for o in config.objectives),
            "constraints": "; ".join(c.describe() for c in config.constraints) or "-",
            **{f"utility.{k}": v for k, v in config.utility.model_dump().items()},
            **{f"finetune.{k}": v for k, v in config.finetune.model_dump().items()},
        }
        self.client.log_batch(
            run_id,
            metrics=_metrics(baseline, prefix="baseline_"),
            params=[Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "search_config.json"
            path.write_text(config.model_dump_json(indent=2))
            self.client.log_artifact(run_id, str(path))
        return run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def child_runs(self, parent_id: str) -> dict[int, str]:
        """Trial number -> child run id, for children logged completely. A child cut short (a
        kill or a lost connection while logging it) is deleted, so that it is logged again."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'",
            max_results=50_000,
        )
        children = {}
        for r in runs:
            if TRIAL_TAG not in r.data.tags:
                continue
            if r.data.tags.get(COMPLETE_TAG) != "true":
                self.client.delete_run(r.info.run_id)
                continue
            children[int(r.data.tags[TRIAL_TAG])] = r.info.run_id
        return children

    # --- child runs --------------------------------------------------------------------------
    def log_trial(self, parent_id: str, record: TrialRecord, model_path: Path | None) -> str:
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_id,
            MLFLOW_RUN_NAME: f"trial-{record.number:04d}",
            TRIAL_TAG: str(record.number),
            "adacomp.plan_hash": record.plan.hash,
            "adacomp.feasible": str(record.feasible).lower(),
            "adacomp.failed": str(record.failed).lower(),
        }
        if record.reason:
            tags["adacomp.failure_reason"] = record.reason[:5000]
        if record.duplicate_of is not None:
            tags["adacomp.duplicate_of"] = str(record.duplicate_of)
        run = self.client.create_run(self.experiment_id, tags=tags, start_time=int(record.finished_at * 1000))
        run_id: str = run.info.run_id
        params = {"plan_hash": record.plan.hash, "plan": str(record.plan)[:MAX_PARAM]}
        for layer, steps in record.plan:
            params[f"layer.{layer}"] = " -> ".join(map(str, steps))[:MAX_PARAM]
        scalars = {
            **record.metrics,
            "utility": record.utility,
            "feasible": float(record.feasible),
            "failed": float(record.failed),
            "trial_seconds": record.seconds,
            **{f"violation_{i}": v for i, v in enumerate(record.violations)},
        }
        self.client.log_batch(
            run_id,
            metrics=_metrics(scalars),
            params=[Param(k, v) for k, v in params.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            plan_path = Path(tmp) / "plan.json"
            plan_path.write_text(record.plan.to_json() + "\n")
            self.client.log_artifact(run_id, str(plan_path))
        if model_path is not None and model_path.exists():
            self.client.log_artifact(run_id, str(model_path))
        status = "FAILED" if record.failed else "FINISHED"
        self.client.set_terminated(run_id, status=status, end_time=int(record.finished_at * 1000) + 1)
        self.client.set_tag(run_id, COMPLETE_TAG, "true")  # last: a child without it is redone
        return run_id

    def log_progress(self, parent_id: str, step: int, values: Mapping[str, float | None]) -> None:
        self.client.log_batch(parent_id, metrics=_metrics(values, step=step))

    # --- the end of a search -----------------------------------------------------------------
    def log_front(
        self,
        parent_id: str,
        files: Sequence[Path],
        front_trials: Sequence[int],
        summary: Mapping[str, float | None],
    ) -> dict[int, str]:
        """Logs the front's files and final numbers, tags each child on or off the front;
        returns trial number -> child run id."""
        for path in files:
            self.client.log_artifact(parent_id, str(path), artifact_path="pareto")
        children = self.child_runs(parent_id)
        on_front = set(front_trials)
        for number, run_id in children.items():
            self.client.set_tag(run_id, FRONT_TAG, str(number in on_front).lower())
        self.client.log_batch(parent_id, metrics=_metrics(summary))
        return children

    def register_best(
        self, parent_id: str, trial_run_id: str, record: TrialRecord, model_path: Path, model_name: str
    ) -> str:
        """Logs the best model as an MLflow ONNX model on its trial's run, registers it, and
        returns `models:/<name>/<version>`; a resumed, finished search keeps its registration."""
        import onnx

        tags = self.client.get_run(parent_id).data.tags
        if tags.get("adacomp.best_trial") == str(record.number) and "adacomp.best_model" in tags:
            return tags["adacomp.best_model"]
        plan = json.loads(record.plan.to_json())
        with mlflow.start_run(run_id=trial_run_id):
            info = mlflow.onnx.log_model(
                onnx.load(str(model_path)),
                name="model",
                registered_model_name=model_name,
                metadata={"plan": plan, "plan_hash": record.plan.hash, "trial": record.number},
                save_as_external_data=False,
                # What loads an ONNX model is known (onnx, onnxruntime); without this MLflow infers
                # it by loading the model in a fresh interpreter, seconds per registration.
                pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            )
        version = str(info.registered_model_version)
        self.client.set_model_version_tag(model_name, version, "adacomp.plan_hash", record.plan.hash)
        self.client.set_model_version_tag(model_name, version, "adacomp.plan", str(record.plan)[:5000])
        registered = f"models:/{model_name}/{version}"
        self.client.set_tag(parent_id, "adacomp.best_trial", str(record.number))
        self.client.set_tag(parent_id, "adacomp.best_model", registered)
        return registered

    def finish(self, parent_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(parent_id, status=status)

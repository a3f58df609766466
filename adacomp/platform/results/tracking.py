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
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from adacomp.atomic import atomic_path
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.mlflow_ui import (
    CHAMPION_ALIAS,
    DEFAULT_UI,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FRONT_TAG,
    FRONT_VIEW_TAG,
    NOTE_TAG,
    SHARED_VIEW_TAG,
    absolute,
    display_metrics,
    front_filter,
    model_version_path,
    run_path,
    runs_path,
    view_key,
)
from adacomp.platform.search_config import SearchConfig

TRIAL_TAG = "adacomp.trial"
SEARCH_TAG = "adacomp.search"
DIR_TAG = "adacomp.dir"
COMPLETE_TAG = "adacomp.complete"
# Prefix of a search's per-target tags: what measured it (device_farm/identity.py), on the search's
# run and on every trial's, so a number is never read as another machine's.
DEVICE_TAG = "adacomp.device"
KIND_TAG = "adacomp.kind"  # which job a run belongs to: search, supernet-train, bundle, ...
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
    from adacomp.tasks.cache_dir import default_cache_dir

    template = (cache_dir or default_cache_dir()) / "mlflow" / f"empty-store-{mlflow.__version__}.db"
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if not template.exists():
            with atomic_path(template) as scratch:
                MlflowClient(f"sqlite:///{scratch}").search_experiments()  # creates and migrates it
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


def search_links(tracking_uri: str, run_id: str, ui: str = DEFAULT_UI) -> dict[str, str]:
    """Deep links into the MLflow UI served at `ui` for one search: its front's runs (the saved
    view once the search has finished, a filter before), its parent run, its registered model."""
    run = MlflowClient(tracking_uri).get_run(run_id)
    experiment, tags = run.info.experiment_id, run.data.tags
    view = tags.get(FRONT_VIEW_TAG)
    front_filter_of_run = f"{front_filter()} and tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'"
    links = {
        "front": absolute(ui, runs_path(experiment, view, None if view else front_filter_of_run)),
        "search run": absolute(ui, run_path(experiment, run_id)),
    }
    registered = tags.get("adacomp.best_model", "")
    if registered.startswith("models:/"):
        name, version = registered.removeprefix("models:/").rsplit("/", 1)
        links["registered model"] = absolute(ui, model_version_path(name, version))
    return links


def recent_searches(tracking_uri: str, limit: int = 5) -> list[tuple[str, str]]:
    """(name, run id) of the store's latest searches, newest first: what `adacomp ui` links to."""
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{KIND_TAG}` = 'search'",
        max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    return [(r.data.tags.get(SEARCH_TAG, r.info.run_name or r.info.run_id), r.info.run_id) for r in runs]


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no copy of a large model), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _params(params: Mapping[str, object]) -> list[Param]:
    """Params as MLflow takes them, each value cut to its limit."""
    return [Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()]


def _series(points: Sequence[tuple[str, float, int]]) -> list[Metric]:
    """(key, value, step) points as metrics, non-finite ones left out."""
    now = _now_ms()
    return [Metric(k, float(v), now, step) for k, v, step in points if math.isfinite(v)]


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
        self.device_tags: dict[str, str] = {}  # DEVICE_TAG.<target> -> identity, on every trial's run
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

    # --- any job's runs ------------------------------------------------------------------------
    def start_run(
        self,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, object] | None = None,
        *,
        parent_id: str | None = None,
        start_ms: int | None = None,
    ) -> str:
        """A new run of this experiment (a child of `parent_id` when given); params are cut to
        MLflow's limit. Every job's runs begin here."""
        tags = {**tags, MLFLOW_RUN_NAME: name}
        if parent_id is not None:
            tags[MLFLOW_PARENT_RUN_ID] = parent_id
        run = self.client.create_run(self.experiment_id, tags=tags, start_time=start_ms)
        run_id: str = run.info.run_id
        if params:
            self.client.log_batch(run_id, params=_params(params))
        return run_id

    def runs_tagged(self, tags: Mapping[str, str]) -> list[str]:
        """The ids of this experiment's live runs carrying all of `tags`, oldest first: a job
        that keeps one run per key (a night's report) finds it again instead of adding one."""
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=where, max_results=50_000, order_by=["start_time ASC"]
        )
        return [r.info.run_id for r in runs]

    def log_metrics(self, run_id: str, values: Mapping[str, float | None], step: int = 0) -> None:
        """Finite numbers only: a missing or NaN metric is left out, never logged as a made-up 0."""
        metrics = _metrics(values, step=step)
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def log_series(self, run_id: str, points: Sequence[tuple[str, float, int]]) -> None:
        """(key, value, step) points in one call: a loss curve, a checkpoint's accuracies."""
        metrics = _series(points)
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def log_files(self, run_id: str, paths: Sequence[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def log_directory(self, run_id: str, directory: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path=artifact_path)

    def log_text(self, run_id: str, file_name: str, text: str) -> None:
        """`text` as the artifact `file_name` (written to a temporary file, MLflow copies files)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / file_name
            path.write_text(text)
            self.client.log_artifact(run_id, str(path))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def describe_run(self, run_id: str, markdown: str) -> None:
        """The run's description in the UI (rendered as Markdown above its details)."""
        self.client.set_tag(run_id, NOTE_TAG, markdown)

    def describe_experiment(self, markdown: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, NOTE_TAG, markdown)
        self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def save_view(self, view: Mapping[str, object]) -> str:
        """Saves a runs-list view where the UI's "Share" button would; returns its key, the
        `viewStateShareKey` of a link that opens it."""
        key = view_key(view)
        self.client.set_experiment_tag(self.experiment_id, f"{SHARED_VIEW_TAG}{key}", json.dumps(view))
        return key

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def register_directory(
        self, model_name: str, run_id: str, artifact_path: str, description: str, tags: Mapping[str, str]
    ) -> str:
        """Registers the run's artifact directory as a new version of `model_name` (created on
        first use); returns `models:/<name>/<version>`."""
        if not self.client.search_registered_models(filter_string=f"name = '{model_name}'"):
            self.client.create_registered_model(model_name, description=description)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(model_name, source=source, run_id=run_id, tags=dict(tags))
        return f"models:/{model_name}/{version.version}"

    def log_child(
        self,
        parent_id: str,
        number: int,
        name: str,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, object],
        metrics: Mapping[str, float | None],
        texts: Mapping[str, str],
        files: Sequence[Path],
        failed: bool,
        finished_at: float,
        seconds: float = 0.0,
        series: Sequence[tuple[str, float, int]] = (),
    ) -> str:
        """One evaluated candidate (a trial, a supernet configuration) as a finished child run.
        `COMPLETE_TAG` is set last: a child cut short has none and `child_runs` redoes it.
        The run is logged after the fact, so its start and end are set to when the candidate
        really ran (`seconds` before `finished_at`): the UI's Duration column is its own.

        Four store calls (run, artifacts, end, values): the driver logs every trial while the
        trials train on the same cores, and each call to a sqlite store costs a transaction."""
        end_ms = int(finished_at * 1000)
        start_ms = end_ms - max(1, round(seconds * 1000)) if math.isfinite(seconds) else end_ms - 1
        tags = {**tags, TRIAL_TAG: str(number)}
        run_id = self.start_run(name, tags, parent_id=parent_id, start_ms=start_ms)
        present = [f for f in files if f.exists()]
        if texts or present:
            # Staged beside the first file, where a hard link (not a copy) can stage the model.
            staging = present[0].parent if present else None
            with tempfile.TemporaryDirectory(dir=staging, prefix=".adacomp-child-") as tmp:
                for file_name, text in texts.items():
                    (Path(tmp) / file_name).write_text(text)
                for path in present:
                    _link_or_copy(path, Path(tmp) / path.name)
                self.client.log_artifacts(run_id, tmp)
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED", end_time=end_ms)
        points, param_list = [*_metrics(metrics), *_series(series)], _params(params)
        complete = [RunTag(COMPLETE_TAG, "true")]
        if (
            len(param_list) + len(complete) <= MAX_PARAMS_TAGS_PER_BATCH
            and len(points) + len(param_list) + len(complete) <= MAX_ENTITIES_PER_BATCH
        ):
            self.client.log_batch(run_id, metrics=points, params=param_list, tags=complete)  # one transaction
        else:  # MLflow splits a large batch: the tag that says "complete" goes after all of it
            self.client.log_batch(run_id, metrics=points, params=param_list)
            self.client.log_batch(run_id, tags=complete)
        return run_id

    # --- the parent run of a search ----------------------------------------------------------
    def start_search(
        self,
        config: SearchConfig,
        out_dir: Path,
        baseline: Mapping[str, float | None],
        *,
        kind: str = "search",
        name: str | None = None,
    ) -> str:
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
        tags = {
            SEARCH_TAG: config.name,
            DIR_TAG: str(out_dir.resolve()),
            KIND_TAG: kind,
            "adacomp.strategy": config.strategy,
        }
        run_id = self.start_run(name or config.name, tags, params)
        self.log_metrics(run_id, {f"baseline_{k}": v for k, v in baseline.items()})
        self.log_text(run_id, "search_config.json", config.model_dump_json(indent=2))
        return run_id

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

    # --- a search's child runs ---------------------------------------------------------------
    def log_trial(self, parent_id: str, record: TrialRecord, model_path: Path | None) -> str:
        tags = {
            **self.device_tags,
            "adacomp.plan_hash": record.plan.hash,
            "adacomp.feasible": str(record.feasible).lower(),
            "adacomp.failed": str(record.failed).lower(),
        }
        if record.reason:  # why it failed, or why it was stopped early (cost-infeasible)
            tags["adacomp.failure_reason" if record.failed else "adacomp.stop_reason"] = record.reason[:5000]
        if record.duplicate_of is not None:
            tags["adacomp.duplicate_of"] = str(record.duplicate_of)
        if record.stopped_at is not None:
            tags["adacomp.stopped_at_rung"] = str(record.stopped_at)
        params = {"plan_hash": record.plan.hash, "plan": str(record.plan)}
        for layer, steps in record.plan:
            params[f"layer.{layer}"] = " -> ".join(map(str, steps))
        scalars = {
            **record.metrics,
            **display_metrics(record.metrics, record.utility),
            "utility": record.utility,
            "feasible": float(record.feasible),
            "failed": float(record.failed),
            "trial_seconds": record.seconds,
            **{f"violation_{i}": v for i, v in enumerate(record.violations)},
        }
        return self.log_child(
            parent_id,
            record.number,
            f"trial-{record.number:04d}",
            tags=tags,
            params=params,
            metrics=scalars,
            texts={"plan.json": record.plan.to_json() + "\n"},
            files=[model_path] if model_path is not None else [],
            failed=record.failed,
            finished_at=record.finished_at,
            seconds=record.seconds,
            # each fine-tune stage at its step count: MLflow draws the plan's rungs as a curve
            series=[
                point
                for r in record.rungs
                for point in (("rung_accuracy", r.accuracy, r.steps), ("rung_score", r.score, r.steps))
            ],
        )

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
        self.log_metrics(parent_id, summary)
        return children

    def register_best(
        self,
        parent_id: str,
        trial_run_id: str,
        record: TrialRecord,
        model_path: Path,
        model_name: str,
        description: str,
    ) -> str:
        """Logs the best model as an MLflow ONNX model on its trial's run (with its signature,
        read from the ONNX graph; its metrics through the search's run), registers it with
        `description` and the alias `champion`, and returns `models:/<name>/<version>`; a
        resumed, finished search keeps its registration."""
        import onnx

        tags = self.client.get_run(parent_id).data.tags
        if tags.get("adacomp.best_trial") == str(record.number) and "adacomp.best_model" in tags:
            return tags["adacomp.best_model"]
        plan = json.loads(record.plan.to_json())
        model = onnx.load(str(model_path))
        metrics = {
            k: float(v) for k, v in record.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)
        }
        ran = self.client.get_run(trial_run_id).info  # reopening the run below ends it "now"
        with mlflow.start_run(run_id=trial_run_id):
            info = mlflow.onnx.log_model(
                model,
                name="model",
                registered_model_name=model_name,
                signature=onnx_signature(model),
                metadata={"plan": plan, "plan_hash": record.plan.hash, "trial": record.number},
                save_as_external_data=False,
                # What loads an ONNX model is known (onnx, onnxruntime); without this MLflow infers
                # it by loading the model in a fresh interpreter, seconds per registration.
                pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            )
            if metrics:  # shown on the logged model's page and beside the registered version
                # Logged through the search's run: the trial's run keeps its own numbers (a
                # polished model's are its `polished_*` there), and the search's run shows the
                # numbers of the model it registered.
                mlflow.log_metrics(metrics, model_id=info.model_id, run_id=parent_id)
        if ran.end_time:  # the trial's run keeps the times it really ran
            self.client.set_terminated(trial_run_id, status=ran.status, end_time=ran.end_time)
        version = str(info.registered_model_version)
        self.client.update_model_version(model_name, version, description=description)
        self.client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
        self.client.set_model_version_tag(model_name, version, "adacomp.plan_hash", record.plan.hash)
        self.client.set_model_version_tag(model_name, version, "adacomp.plan", str(record.plan)[:5000])
        polished = str(record.polished).lower()  # numbers after the search's polish, or the trial's own
        self.client.set_model_version_tag(model_name, version, "adacomp.polished", polished)
        registered = f"models:/{model_name}/{version}"
        self.client.set_tag(parent_id, "adacomp.best_trial", str(record.number))
        self.client.set_tag(parent_id, "adacomp.best_model", registered)
        return registered


def onnx_signature(model: object) -> ModelSignature:
    """The model's inputs and outputs as an MLflow signature, from its ONNX graph: names, element
    types and shapes (a symbolic dimension, the batch, is -1). No inference run is needed."""
    from onnx import ModelProto
    from onnx.helper import tensor_dtype_to_np_dtype

    assert isinstance(model, ModelProto)

    def specs(values: Sequence[Any]) -> Schema:
        tensors: list[ColSpec | TensorSpec] = []
        for value in values:
            tensor = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            tensors.append(TensorSpec(tensor_dtype_to_np_dtype(tensor.elem_type), shape, value.name))
        return Schema(tensors)

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return ModelSignature(inputs=specs(inputs), outputs=specs(model.graph.output))

"""The search: Ray Tune runs trials, an Optuna strategy proposes plans, MLflow records it all.

`search(config)` is the whole job (the CLI's `adacomp search` is a thin layer over it):

1. validate everything a user can get wrong before any training (config, strategy, targets);
2. train (or load from cache) the uncompressed model and measure it like a trial: the baseline
   that normalises the utility and is the summary table's first row;
3. start or reconnect to Ray (embedded by default; `address` or RAY_ADDRESS for a cluster) with
   the host device's measurement cores kept free of training;
4. run the remaining trials with Tune; the trial function gets the task, weights and baseline
   once through the object store (`tune.with_parameters`) and caches its context per worker;
5. record each finished trial (driver side): ledger line, MLflow child run, progress view;
6. at the end: Pareto front (CSV, Parquet, PNG, HTML), hypervolume, best model registered.

Everything lives under `<output.dir>/<name>/`; a resumed search (`resume=True`) continues from
the ledger and the Optuna journal there (see ledger.py and optuna_searcher.py).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback

from adacomp.device_farm import FarmConfig
from adacomp.device_farm.config import HostSpec
from adacomp.device_farm.cores import available_cores, pin_process
from adacomp.errors import AdacompError, first_line
from adacomp.platform.cluster import check_reachable, join
from adacomp.platform.evaluate.evaluators.supernet import SupernetEvaluator, bn_batches
from adacomp.platform.evaluate.farm_targets import farm_for_targets
from adacomp.platform.evaluate.trial import TrialContext, baseline_metrics, trial_accelerator
from adacomp.platform.results.front import (
    best_by_utility,
    normalised_hypervolume,
    pareto_front,
)
from adacomp.platform.results.job_dir import JobDir
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.results.mlflow_ui import FRONT_VIEW_TAG, display_metrics
from adacomp.platform.results.snapshot import (
    POLISHED_FILE,
    STATE_FILE,
    SearchResult,
    SearchSnapshot,
    model_file,
    with_polished,
)
from adacomp.platform.search import ray_watchdog
from adacomp.platform.search.environment import scoped_environment, search_flags
from adacomp.platform.search.polish import StartingWeights, polish_candidates, polish_front
from adacomp.platform.search.progress import ProgressView, SearchProgress
from adacomp.platform.search.resources import check_cluster_fits, trial_resources, trials_that_fit
from adacomp.platform.search.rungs import RungHalving, RungStore
from adacomp.platform.search.space import PreparedSpace, check_techniques_known, prepare_space
from adacomp.platform.search.supernet_mode import (
    TrainedSupernet,
    plans_in_space_terms,
    supernet_space,
    trained_for_search,
)
from adacomp.platform.search.trial_worker import TrialPayload, run_trial, trial_dirname
from adacomp.platform.search_config import SearchConfig, as_search_config, silent
from adacomp.platform.strategies._base import (
    DUPLICATE_OF,
    PLAN_HASH_ATTR,
    SearchContext,
    SearcherSetup,
    Strategy,
)
from adacomp.platform.strategies.plan_space import params_from_plan, plan_from_params, suggest
from adacomp.platform.strategies.registry import get_strategy
from adacomp.search_spaces import CompressionPlan
from adacomp.tasks import Task, load_task, pretrained_model

# Fields that define what a search measures: a resumed search must not change them.
# Supernet settings that say how its training runs or what a bundle ships, not what it measures.
SUPERNET_RUNNING = frozenset({"workers", "threads", "checkpoint_every", "bundle_size", "runtime_utility"})
IDENTITY_FIELDS = (
    "task",
    "targets",
    "objectives",
    "constraints",
    "utility",
    "finetune",
    "seed",
    "measure",
    "techniques",
    "space",
    "fidelity",
)


# --- the driver ------------------------------------------------------------------------------
def _identity(config: SearchConfig) -> dict[str, Any]:
    """What a resumed search must share with the one it continues. A supernet-mode search adds
    its evaluation and the supernet's settings (what every plan's numbers come from); a
    fine-tune search's identity is what it always was, so earlier searches still resume."""
    dumped = json.loads(config.model_dump_json())
    identity = {k: dumped[k] for k in IDENTITY_FIELDS}
    if config.evaluation != "finetune":
        supernet = {k: v for k, v in dumped["supernet"].items() if k not in SUPERNET_RUNNING}
        identity.update(evaluation=config.evaluation, supernet=supernet)
    return identity


def check_objectives_measurable(config: SearchConfig, baseline: dict[str, float | None]) -> None:
    for objective in config.objectives:
        if baseline.get(objective.key) is None:
            raise AdacompError(
                f"objectives: {objective.key!r} has no value for the uncompressed model "
                f"(device {objective.target!r} cannot measure {objective.metric}); "
                "remove it or pick another device"
            )


def job_baseline(
    ctx: TrialContext, state: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, float | None]:
    """A resumed job's saved baseline, else the uncompressed model measured now (and refused
    when an objective cannot be measured on it); set on `ctx` either way."""
    if state:
        baseline: dict[str, float | None] = state["baseline"]
    else:
        say("measuring the uncompressed model on " + ", ".join(ctx.config.targets))
        baseline = baseline_metrics(ctx)
        check_objectives_measurable(ctx.config, baseline)
    ctx.baseline = baseline
    return baseline


class _SearchRun:
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
        # a proposal of either is no trial (see `_define_by_run`). Ledgers written before
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
        self.view.trial_finished(_describe(record))

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


def _describe(record: TrialRecord) -> str:
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

    def __init__(self, run: _SearchRun) -> None:
        self.run: _SearchRun | None = run

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


def _record_completed(run: _SearchRun, trial: Any) -> None:
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


def _record_crashed(run: _SearchRun, trial: Any) -> None:
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


def _define_by_run(config: SearchConfig, run: _SearchRun, space: Any) -> Callable[[Any], dict[str, Any]]:
    """The Optuna searcher's proposal of a trial. A plan this search has evaluated or is
    evaluating comes back as `{DUPLICATE_OF: its trial}` instead: the searcher asks again, so a
    repeated plan takes no slot of `trials` and never becomes a trial, a ledger line or an
    MLflow child run (optuna_searcher.py); a new one is in flight until it is recorded.

    Every drawn plan's hash goes on its Optuna trial at once: the study then tells a proposal
    from a trial that a kill cut short while it was still being drawn (params partial or none).
    """

    def define(trial: Any) -> dict[str, Any]:
        suggest(trial, space)
        plan = plan_from_params(trial.params, space)
        trial.set_user_attr(PLAN_HASH_ATTR, plan.hash)
        earlier = run.by_hash.get(plan.hash)
        known = earlier.number if earlier is not None else run.in_flight.get(plan.hash)
        if known is not None:
            return {DUPLICATE_OF: known}
        run.in_flight[plan.hash] = trial.number
        return {
            "plan": plan.to_json(indent=None),
            "trial_number": trial.number,
            "seed": config.seed + trial.number,
        }

    return define


def _init_ray(address: str | None, farm: FarmConfig) -> tuple[bool, Any]:
    """Starts (True) or joins (False) Ray; returns the host core reservation when local."""
    import ray

    from adacomp.platform.search.ray_farm import init_local_ray

    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        join(address)
        return True, None
    uses_host = any(isinstance(spec, HostSpec) for spec in farm.devices)
    reservation = init_local_ray(
        farm,
        measurement_cores=1 if uses_host else 0,
        log_to_driver=False,
        include_dashboard=False,
        configure_logging=False,
    )
    return True, reservation


def search(
    config: SearchConfig | str | Path,
    *,
    resume: bool = False,
    address: str | None = None,
    progress: bool = True,
    initial_plans: Sequence[CompressionPlan] = (),
    study: tuple[Path, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Runs (or resumes) a compression search and returns its front, MLflow run and best plan.

    `config` is a SearchConfig or the path of its YAML file. With `resume`, a search killed
    earlier continues where it stopped (a search that never ran simply starts). `address`
    joins a Ray cluster instead of starting Ray on this machine (RAY_ADDRESS works too).
    `initial_plans` are evaluated first (a warm start: known-good plans, last night's front).
    `study` (Optuna journal file, study name) shares one Optuna study between searches (the
    nightly searches); by default each search has its own, in its directory.
    """
    started = time.perf_counter()
    say = log or silent
    config = as_search_config(config)
    strategy = get_strategy(config.strategy)
    strategy.check(config)
    farm_config = farm_for_targets(config)
    if address or os.environ.get("RAY_ADDRESS"):  # before any work: a cluster nothing answers at
        check_reachable(address or os.environ["RAY_ADDRESS"])
    out_dir = (config.output.dir / config.name).resolve()
    state = _open_job(config, out_dir, resume)
    tracking_uri = _tracking_uri(config, state)
    loaded = _load_model(config, out_dir, say, initial_plans)
    cores_before = available_cores()  # a local Ray pins this process to its training cores
    # A resume with every trial and every polish recorded only re-reads and re-prints: no Ray.
    finished = _nothing_left(config, out_dir, state)
    started_ray, reservation = (False, None) if finished else _init_ray(address, farm_config)
    # A local Ray outlives a search killed with its process group (its helpers run in groups of
    # their own): the watchdog, in a session of its own, stops them when this process is gone.
    watchdog = ray_watchdog.start() if started_ray and reservation is not None else None
    try:
        import ray

        # Before the baseline is measured or a trial asked for: one no node can place would wait
        # in Ray's queue forever. (The model is loaded before Ray starts, with every core.)
        if not finished:
            check_cluster_fits(config.resources, ray.cluster_resources())  # type: ignore[no-untyped-call]
        with scoped_environment(search_flags(tracking_uri)):  # Tune's and MLflow's, this search only
            return _run(
                config,
                strategy,
                farm_config,
                reservation,
                loaded,
                out_dir,
                state,
                tracking_uri,
                resume=bool(state),
                progress=progress,
                study=study or (out_dir / "optuna.journal", f"adacomp-{config.name}"),
                say=say,
                started=started,
            )
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        if watchdog is not None:
            watchdog.kill()  # nothing left to watch
            watchdog.wait()
            pin_process(cores_before)  # a second search in this process gets every core again


def _nothing_left(config: SearchConfig, out_dir: Path, state: Mapping[str, Any]) -> bool:
    """A resumed search whose every trial and every polish of its front is recorded: what
    `_run` would do is read the ledgers and print, so Ray (seconds to start) is not needed.
    The same conditions `_run` and `polish_front` test, read from the same files."""
    if not state:
        return False
    records = Ledger[TrialRecord](out_dir / "trials.jsonl").load()
    if config.trials - len(records) > 0:
        return False
    if not config.polish.top_k:
        return True
    polished = {r.number for r in Ledger[TrialRecord](out_dir / POLISHED_FILE).load()}
    return all(r.number in polished for r in polish_candidates(config, records))


def _job_dir(config: SearchConfig, out_dir: Path) -> JobDir:
    return JobDir(out_dir, STATE_FILE, f"search {config.name!r}")


def _open_job(config: SearchConfig, out_dir: Path, resume: bool) -> dict[str, Any]:
    """The search's saved state ({} for a new one); a clash with an existing search is refused."""
    return _job_dir(config, out_dir).open(
        resume=resume,
        identity=_identity(config),
        existing=lambda: f" ({len(Ledger(out_dir / 'trials.jsonl').load())} finished trials)",
        changed=lambda fields: (
            f"{fields[0]}: differs from the search being resumed in {out_dir}; "
            "a resumed search must measure the same way (change 'name' to start a new one)"
        ),
    )


def _tracking_uri(config: SearchConfig, state: Mapping[str, Any]) -> str:
    """The config's store, else the one a resumed search used, else the default next to the output."""
    from adacomp.platform.results.tracking import default_tracking_uri

    uri = config.output.tracking_uri or state.get("tracking_uri") or default_tracking_uri(config.output.dir)
    return str(uri)


@dataclass(frozen=True)
class _Loaded:
    """What a search evaluates plans of: the task, its trained uncompressed model, the space the
    samplers see and, in supernet mode, the supernet trained for this search."""

    task: Task
    model: torch.nn.Module
    prepared: PreparedSpace
    initial_plans: tuple[CompressionPlan, ...]  # a warm start's, in the space's own values
    supernet: TrainedSupernet | None = None


def _load_model(
    config: SearchConfig, out_dir: Path, say: Callable[[str], None], initial_plans: Sequence[CompressionPlan]
) -> _Loaded:
    """The task, its trained uncompressed model, the supernet (supernet mode) and the space;
    in supernet mode a warm-start plan the supernet cannot express is refused before training."""
    task = load_task(config.task)
    check_techniques_known(config)  # after the task's import: a user's module may register some
    say(f"task {task.name}: training or loading the uncompressed model")
    model = pretrained_model(task, seed=config.seed)
    if config.evaluation == "supernet":
        written = plans_in_space_terms(config, task, model, initial_plans)
        trained = trained_for_search(config, task, model, say)
        prepared = supernet_space(config, trained, task, model)
        say(f"search space: {prepared.describe()}, the supernet's configurations")
        return _Loaded(task, model, prepared, written, trained)
    prepared = prepare_space(config, task, model, out_dir, say)
    say(f"search space: {prepared.describe()}")
    return _Loaded(task, model, prepared, tuple(initial_plans))


def _run(
    config: SearchConfig,
    strategy: Strategy,
    farm_config: FarmConfig,
    reservation: Any,
    loaded: _Loaded,
    out_dir: Path,
    state: dict[str, Any],
    tracking_uri: str,
    *,
    resume: bool,
    progress: bool,
    study: tuple[Path, str],
    say: Callable[[str], None],
    started: float,
) -> SearchResult:
    from adacomp.platform.search.ray_farm import RayFarm

    task, model, prepared = loaded.task, loaded.model, loaded.prepared
    tracker = _open_tracker(config, tracking_uri)
    calibration = task.calibration_batches()
    ctx = TrialContext(config, task, model, RayFarm(farm_config, reservation), config.measure, calibration)
    ctx.accelerator = trial_accelerator(config.resources)  # the polish fine-tunes here, in the driver
    baseline = job_baseline(ctx, state, say)
    parent_id = _parent_run(config, out_dir, tracker, state, baseline, tracking_uri, resume)
    if loaded.supernet is not None and not resume:  # the shared recovery's cost, beside the trials'
        trained = loaded.supernet
        tracker.log_metrics(
            parent_id,
            {
                "supernet_steps": float(trained.steps),
                "supernet_train_seconds": trained.seconds,
                "supernet_reused": float(trained.reused),
            },
        )

    view = ProgressView(SearchProgress(total=config.trials), enabled=progress)
    run = _SearchRun(config, out_dir, tracker, parent_id, baseline, view, say)
    if resume:
        recovered = run.reconcile()
        say(
            f"resuming: {len(run.records)} trials finished"
            + (f", {recovered} re-logged to MLflow" if recovered else "")
        )
    remaining = config.trials - len(run.records)
    view.progress.done = len(run.records)
    view.progress.failed = sum(r.failed for r in run.records)
    payload = TrialPayload(
        key=f"{out_dir}:{time.time_ns()}",
        config=config,
        task=task,
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        baseline=baseline,
        calibration=calibration,
        settings=config.measure,
        farm=farm_config,
        rung_dir=run.rungs.directory,
        supernet_weights=loaded.supernet.weights if loaded.supernet is not None else None,
    )
    try:
        if remaining > 0:
            # A resume first proposes plans a kill cut short mid-fine-tune (on from their last stage).
            first = run.rungs.unfinished(set(run.by_hash)) if resume else loaded.initial_plans
            if resume and first:
                say(f"resuming: {len(first)} plans continue their fine-tune after their last finished stage")
            setup = _searcher_setup(config, run, prepared, model, task, study, first, out_dir)
            _tune(config, strategy, setup, run, view, payload, remaining, out_dir, say)
    finally:
        run.drain()  # every trial handed to MLflow's logger was tried before the search goes on
    polished = (
        polish_front(config, ctx, run.records, out_dir, say, _polish_start(ctx, loaded))
        if config.polish.top_k
        else []
    )
    return _finish(config, out_dir, run, polished, tracker, parent_id, baseline, tracking_uri, started)


def _polish_start(ctx: TrialContext, loaded: _Loaded) -> StartingWeights | None:
    """In supernet mode, the front's plans are polished from the supernet's weights."""
    if loaded.supernet is None:
        return None
    return SupernetEvaluator(ctx, loaded.supernet.supernet, bn_batches(ctx.task, ctx.config)).starting_weights


def _open_tracker(config: SearchConfig, tracking_uri: str) -> Any:
    from adacomp.platform.results.tracking import SearchTracker

    try:
        return SearchTracker.for_config(config, tracking_uri)
    except Exception as exc:
        raise AdacompError(
            f"output.tracking_uri: cannot reach MLflow at {tracking_uri} ({first_line(exc)})"
        ) from exc


def _parent_run(
    config: SearchConfig,
    out_dir: Path,
    tracker: Any,
    state: dict[str, Any],
    baseline: dict[str, float | None],
    tracking_uri: str,
    resume: bool,
) -> str:
    """The search's MLflow parent run: reopened on a resume, else started and saved in the state."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        parent_id: str = state["parent_run_id"]
        tracker.reopen(parent_id)
        return parent_id
    parent_id = tracker.start_search(config, out_dir, baseline)
    state = {
        "name": config.name,
        "parent_run_id": parent_id,
        "tracking_uri": tracking_uri,
        "experiment": config.output.experiment,
        "identity": _identity(config),
        "baseline": baseline,
        "config": json.loads(config.model_dump_json()),
    }
    _job_dir(config, out_dir).save(state)
    return parent_id


def _searcher_setup(
    config: SearchConfig,
    run: _SearchRun,
    prepared: PreparedSpace,
    model: torch.nn.Module,
    task: Task,
    study: tuple[Path, str],
    initial_plans: Sequence[CompressionPlan],
    out_dir: Path,
) -> SearcherSetup:
    """What the strategy builds its searcher from; the Optuna study lives in its journal file."""
    from adacomp.platform.strategies.optuna_searcher import open_journal

    journal, study_name = study
    storage = open_journal(journal, study_name)
    space = prepared.space
    return SearcherSetup(
        define_by_run=_define_by_run(config, run, space),
        metrics=tuple(o.key for o in config.objectives),
        modes=tuple(o.mode for o in config.objectives),
        trials=config.trials,
        seed=config.seed,
        storage=storage,
        study_name=study_name,
        initial_points=tuple(params_from_plan(p, space) for p in initial_plans),
        context=SearchContext(
            config=config,
            space=space,
            model=model,
            example_input=task.example_input(2),
            baseline=run.baseline,
            history=tuple(run.records),
            state_dir=out_dir,
            on_progress=run.log_progress,
            sensitivity=prepared.sensitivity,
        ),
    )


def _tune(
    config: SearchConfig,
    strategy: Strategy,
    setup: SearcherSetup,
    run: _SearchRun,
    view: ProgressView,
    payload: TrialPayload,
    remaining: int,
    out_dir: Path,
    say: Callable[[str], None],
) -> None:
    """The remaining trials as Ray Tune trials, proposed by the strategy's searcher."""
    import ray
    from ray import tune

    cluster = ray.cluster_resources()  # type: ignore[no-untyped-call]
    concurrency = trials_that_fit(config.resources, cluster, config.concurrency)
    request = trial_resources(config.resources)
    each = ", ".join(f"{v:g} {k.upper()}" for k, v in request.items())
    say(f"searching: {remaining} trials with {config.strategy}, {concurrency} at a time ({each} each)")
    searcher = strategy.searcher(setup)
    scheduler = RungHalving(config.fidelity, run.rungs.points()) if config.fidelity.rungs > 1 else None
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, payload=payload), request),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=remaining,
            max_concurrent_trials=concurrency,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(out_dir / "ray"),
            callbacks=[TrialRecorder(run), JsonLoggerCallback()],  # type: ignore[no-untyped-call]
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    with view:
        try:
            tuner.fit()
        finally:
            strategy.finish(searcher)
    if len(run.records) < config.trials:  # the searcher said FINISHED: it had no new plan left
        say(
            f"{config.strategy} proposed no plan this search has not evaluated: it ends with "
            f"{len(run.records)} of {config.trials} trials (the space may hold no more)"
        )
    if scheduler is not None and scheduler.stopped:
        say(f"multi-fidelity: {scheduler.stopped} plans stopped early after a short fine-tune")


def _finish(
    config: SearchConfig,
    out_dir: Path,
    run: _SearchRun,
    polished: Sequence[TrialRecord],
    tracker: Any,
    parent_id: str,
    baseline: dict[str, float | None],
    tracking_uri: str,
    started: float,
) -> SearchResult:
    from adacomp.platform.results.descriptions import front_markdown, version_description
    from adacomp.platform.results.plots import pareto_html, pareto_png

    snapshot = SearchSnapshot(
        config=config,
        baseline=baseline,
        records=with_polished(run.records, polished),
        run_id=parent_id,
        tracking_uri=tracking_uri,
        out_dir=out_dir,
    )
    records, front = snapshot.records, snapshot.front_records
    table = snapshot.front
    files = [out_dir / "front.csv", out_dir / "front.parquet", out_dir / "front.md"]
    table.to_csv(files[0], index=False)
    table.to_parquet(files[1], index=False)
    files[2].write_text(front_markdown(snapshot) + "\n")
    files.append(pareto_png(config, records, baseline, out_dir / "pareto.png"))
    files.append(pareto_html(config, records, baseline, out_dir / "pareto.html"))
    patient = _PatientMlflow(run, config.output.mlflow_wait_s)
    patient.call("logging the trials", lambda: run.flush(strict=True))
    children = patient.call(
        "logging the front",
        lambda: tracker.log_front(
            parent_id,
            files,
            [r.number for r in front],
            {
                "hypervolume_final": snapshot.hypervolume,
                "front_size_final": float(len(front)),
                "trials_failed_final": float(sum(r.failed for r in records)),
            },
        ),
    )
    patient.call("logging the polished numbers", lambda: _log_polished(tracker, children, polished))
    registered = None
    best = snapshot.best
    if best is not None and snapshot.model_path(best).exists():
        trial_run = children.get(best.number, parent_id)
        path = snapshot.model_path(best)
        about = version_description(snapshot, best, tracker.experiment_id, trial_run)
        registered = patient.call(
            "registering the best model",
            lambda: tracker.register_best(parent_id, trial_run, best, path, config.name, about),
        )
    describe = lambda: _describe_in_mlflow(tracker, snapshot, children, registered)  # noqa: E731
    patient.call("describing the search", describe)
    patient.call("closing the search's run", lambda: tracker.finish(parent_id))
    return SearchResult(
        **{f.name: getattr(snapshot, f.name) for f in fields(SearchSnapshot)},
        registered_model=registered,
        seconds=time.perf_counter() - started,
    )


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


class _PatientMlflow:
    """The end of a search: each MLflow step is retried until the store answers or `wait_s`
    passes; then one clear error says where the results are (the ledger, the front files)."""

    def __init__(self, run: _SearchRun, wait_s: float) -> None:
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

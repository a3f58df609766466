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

This module is the orchestration only; each step is a module of its own: `preflight.py` (identity,
state, baseline), `supernet_mode.py` (the supernet trained for an `evaluation: supernet` search),
`space.py`, `ray_lifecycle.py`, `search_run.py` (ledger, MLflow copy, progress, Tune's recorder),
`proposals.py` (a drawn plan or a duplicate), `tune_run.py` (the Tune wiring), `polish.py` and
`publish.py` (the front's files and MLflow, patient with the store).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adacomp.device_farm import FarmConfig
from adacomp.device_farm.cores import available_cores, pin_process
from adacomp.errors import AdacompError, first_line
from adacomp.platform.cluster import check_reachable
from adacomp.platform.evaluate.evaluators.supernet import SupernetEvaluator, bn_batches
from adacomp.platform.evaluate.farm_targets import farm_for_targets
from adacomp.platform.evaluate.trial import TrialContext, trial_accelerator
from adacomp.platform.results.snapshot import (
    SearchResult,
)
from adacomp.platform.results.tracking import DEVICE_TAG
from adacomp.platform.search import ray_watchdog
from adacomp.platform.search.environment import scoped_environment, search_flags
from adacomp.platform.search.polish import StartingWeights, polish_front
from adacomp.platform.search.preflight import (
    device_identities,
    identity,
    job_baseline,
    job_dir,
    nothing_left,
    open_job,
    tracking_uri_of,
)
from adacomp.platform.search.progress import ProgressView, SearchProgress
from adacomp.platform.search.publish import finish
from adacomp.platform.search.ray_lifecycle import init_ray
from adacomp.platform.search.resources import check_cluster_fits
from adacomp.platform.search.search_run import SearchRun
from adacomp.platform.search.space import PreparedSpace, check_techniques_known, prepare_space
from adacomp.platform.search.supernet_mode import (
    TrainedSupernet,
    plans_in_space_terms,
    supernet_space,
    trained_for_search,
    uniform_plans,
)
from adacomp.platform.search.trial_worker import TrialPayload
from adacomp.platform.search.tune_run import run_tune, searcher_setup
from adacomp.platform.search_config import SearchConfig, as_search_config, silent
from adacomp.platform.strategies._base import (
    Strategy,
)
from adacomp.platform.strategies.registry import get_strategy
from adacomp.search_spaces import CompressionPlan
from adacomp.tasks import Task, load_task, pretrained_model


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
    strategy, farm_config = _preflight(config, address)
    out_dir = (config.output.dir / config.name).resolve()
    state = open_job(config, out_dir, resume)
    tracking_uri = tracking_uri_of(config, state)
    loaded = _load_model(config, out_dir, say, initial_plans)
    cores_before = available_cores()  # a local Ray pins this process to its training cores
    # A resume with every trial and every polish recorded only re-reads and re-prints: no Ray.
    finished = nothing_left(config, out_dir, state)
    started_ray, reservation = (False, None) if finished else init_ray(address, farm_config)
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
        _stop_ray(started_ray, watchdog, cores_before)


def _preflight(config: SearchConfig, address: str | None) -> tuple[Strategy, FarmConfig]:
    """Everything a user can get wrong, refused before any work: the strategy's own checks,
    the targets, a cluster nothing answers at."""
    strategy = get_strategy(config.strategy)
    strategy.check(config)
    farm_config = farm_for_targets(config)
    if address or os.environ.get("RAY_ADDRESS"):
        check_reachable(address or os.environ["RAY_ADDRESS"])
    return strategy, farm_config


def _stop_ray(started_ray: bool, watchdog: Any, cores_before: Any) -> None:
    """A Ray this search started is shut down, its watchdog with it, the process's cores restored."""
    if started_ray:
        import ray

        ray.shutdown()
    if watchdog is not None:
        watchdog.kill()  # nothing left to watch
        watchdog.wait()
        pin_process(cores_before)  # a second search in this process gets every core again


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
        # At most a third of the budget: the sampler's own proposals are the search.
        anchors = uniform_plans(prepared.space, config.supernet.width, config.supernet.precisions)
        anchors = anchors[: config.trials // 3]
        first = tuple({p.hash: p for p in (*written, *anchors)}.values())
        return _Loaded(task, model, prepared, first, trained)
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
    devices = device_identities(ctx.farm, config, state, say)
    parent_id = _parent_run(config, out_dir, tracker, state, baseline, tracking_uri, resume, devices)
    tracker.device_tags = {f"{DEVICE_TAG}.{target}": found for target, found in devices.items() if found}
    tracker.set_tags(parent_id, tracker.device_tags)
    if loaded.supernet is not None and not resume:
        _log_supernet_cost(tracker, parent_id, loaded.supernet)
    view = ProgressView(SearchProgress(total=config.trials), enabled=progress)
    run = SearchRun(config, out_dir, tracker, parent_id, baseline, view, say)
    if resume:
        recovered = run.reconcile()
        say(
            f"resuming: {len(run.records)} trials finished"
            + (f", {recovered} re-logged to MLflow" if recovered else "")
        )
    remaining = config.trials - len(run.records)
    view.progress.done = len(run.records)
    view.progress.failed = sum(r.failed for r in run.records)
    payload = _payload(config, out_dir, loaded, ctx, farm_config, run)
    try:
        if remaining > 0:
            # A resume first proposes plans a kill cut short mid-fine-tune (on from their last stage).
            first = run.rungs.unfinished(set(run.by_hash)) if resume else loaded.initial_plans
            if resume and first:
                say(f"resuming: {len(first)} plans continue their fine-tune after their last finished stage")
            setup = searcher_setup(config, run, prepared, model, task, study, first, out_dir)
            run_tune(config, strategy, setup, run, view, payload, remaining, out_dir, say)
    finally:
        run.drain()  # every trial handed to MLflow's logger was tried before the search goes on
    polished = (
        polish_front(config, ctx, run.records, out_dir, say, _polish_start(ctx, loaded))
        if config.polish.top_k
        else []
    )
    return finish(config, out_dir, run, polished, tracker, parent_id, baseline, tracking_uri, started)


def _log_supernet_cost(tracker: Any, parent_id: str, trained: TrainedSupernet) -> None:
    """What the shared recovery cost, on the search's run beside what the trials cost."""
    tracker.log_metrics(
        parent_id,
        {
            "supernet_steps": float(trained.steps),
            "supernet_train_seconds": trained.seconds,
            "supernet_reused": float(trained.reused),
        },
    )


def _payload(
    config: SearchConfig, out_dir: Path, loaded: _Loaded, ctx: TrialContext, farm: FarmConfig, run: SearchRun
) -> TrialPayload:
    """What every trial needs, put in Ray's object store once."""
    return TrialPayload(
        key=f"{out_dir}:{time.time_ns()}",
        config=config,
        task=loaded.task,
        weights={k: v.detach().clone() for k, v in loaded.model.state_dict().items()},
        baseline=dict(ctx.baseline),
        calibration=ctx.calibration,
        settings=config.measure,
        farm=farm,
        rung_dir=run.rungs.directory,
        supernet_weights=loaded.supernet.weights if loaded.supernet is not None else None,
    )


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
    devices: Mapping[str, str],
) -> str:
    """The search's MLflow parent run: reopened on a resume, else started and saved in the state
    (with what each target device is: a resume on other machines says so)."""
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
        "identity": identity(config),
        "baseline": baseline,
        "devices": dict(devices),
        "config": json.loads(config.model_dump_json()),
    }
    job_dir(config, out_dir).save(state)
    return parent_id

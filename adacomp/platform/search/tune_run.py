"""The trials as Ray Tune trials: the strategy's searcher, the multi-fidelity scheduler, the
trainable with its payload, concurrency that fits the cluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from ray.tune.logger import JsonLoggerCallback

from adacomp.platform.search.progress import ProgressView
from adacomp.platform.search.proposals import define_by_run
from adacomp.platform.search.resources import trial_resources, trials_that_fit
from adacomp.platform.search.rungs import RungHalving
from adacomp.platform.search.search_run import SearchRun, TrialRecorder
from adacomp.platform.search.space import PreparedSpace
from adacomp.platform.search.trial_worker import TrialPayload, run_trial, trial_dirname
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies._base import (
    SearchContext,
    SearcherSetup,
    Strategy,
)
from adacomp.platform.strategies.plan_space import params_from_plan
from adacomp.search_spaces import CompressionPlan
from adacomp.tasks import Task


def searcher_setup(
    config: SearchConfig,
    run: SearchRun,
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
        define_by_run=define_by_run(config, run, space, given=initial_plans),
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


def run_tune(
    config: SearchConfig,
    strategy: Strategy,
    setup: SearcherSetup,
    run: SearchRun,
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

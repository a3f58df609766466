"""A plan the search already has is never a trial again (issue 20 item 3): the searcher asks
past it, so `trials` counts distinct plans, resumed or not, and a space with nothing new left
ends the search short, saying so. Real Optuna studies (journal files, NSGA-II as the search
builds it); the end-to-end test runs a real search (Ray, MLflow sqlite store)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray.tune.search import Searcher

from adacomp.platform.strategies._base import DUPLICATE_OF
from adacomp.platform.strategies.optuna_searcher import (
    NEW_PLAN_TRIES,
    ConstrainedOptunaSearch,
    ask_new,
    fail_interrupted_trials,
    open_journal,
)

AXES = {"x": [0, 1, 2, 3], "y": [0, 1, 2, 3], "z": [0, 1, 2, 3]}  # 64 toy "plans"


def _plan(trial: Any, axes: dict[str, list[int]]) -> str:
    return json.dumps({k: trial.suggest_categorical(k, v) for k, v in axes.items()})


class _Search:
    """What the search's `define_by_run` does, over a toy space: plans it has are duplicates."""

    def __init__(self, axes: dict[str, list[int]], known: dict[str, int] | None = None) -> None:
        self.axes, self.known = axes, dict(known or {})

    def define(self, trial: Any) -> dict[str, Any]:
        plan = _plan(trial, self.axes)
        if plan in self.known:
            return {DUPLICATE_OF: self.known[plan]}
        self.known[plan] = trial.number
        return {"plan": plan, "trial_number": trial.number}


def _searcher(
    define: Callable[[Any], dict[str, Any]], storage: Any, seed: int = 1
) -> ConstrainedOptunaSearch:
    # The nsga2 strategy's sampler for an 8-trial budget (registry._nsga2): a population of 4.
    return ConstrainedOptunaSearch(
        space=define,
        metric=["accuracy", "latency"],
        mode=["max", "min"],
        sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=seed),
        study_name="toy",
        storage=storage,
    )


def _duplicates(storage: Any) -> dict[int, int]:
    """Trial number -> the trial whose plan it repeated, for the proposals told as duplicates."""
    study = optuna.load_study(study_name="toy", storage=storage)
    return {
        t.number: t.user_attrs["adacomp:duplicate_of"]
        for t in study.trials
        if "adacomp:duplicate_of" in t.user_attrs
    }


def test_a_resumed_nsga2_study_repeats_its_first_plans_and_the_searcher_asks_past_them(
    tmp_path: Path,
) -> None:
    """The issue's case: killed after 2 finished trials, the resumed process's NSGA-II (same
    seed, first generation: seeded random draws) proposes the first run's plans again; each is
    told as a duplicate of the trial that has it, and Tune only ever gets new plans."""
    journal = tmp_path / "optuna.journal"
    first = _Search(AXES)
    searcher = _searcher(first.define, open_journal(journal, "toy"))
    proposed = [searcher.suggest(f"a{i}") for i in range(3)]
    for i, values in ((0, (0.9, 2.0)), (1, (0.8, 1.0))):
        searcher.on_trial_complete(f"a{i}", {"accuracy": values[0], "latency": values[1], "violations": []})
    # The kill: trial 2 is left RUNNING; the resumed search marks it FAIL and knows trials 0, 1.
    finished = {p["plan"]: p["trial_number"] for p in proposed[:2] if p is not None}
    storage = open_journal(journal, "toy")
    assert fail_interrupted_trials(storage, "toy") == 0, "open_journal already marked it"
    resumed = _Search(AXES, finished)
    again = _searcher(resumed.define, storage)
    new = [again.suggest(f"b{i}") for i in range(6)]

    assert _duplicates(storage) == {3: 0, 4: 1}, "the seeded random stream started over"
    plans = [p["plan"] for p in new if p is not None]
    assert len(plans) == 6 and len(set(plans)) == 6 and not set(plans) & set(finished)
    # Trial 2's plan (killed) is proposed again and evaluated: it never finished.
    assert proposed[2] is not None and new[0] is not None and new[0]["plan"] == proposed[2]["plan"]
    assert all(DUPLICATE_OF not in p for p in new if p is not None)


def test_the_searcher_asks_past_plans_in_flight_and_says_finished_when_none_is_new(
    tmp_path: Path,
) -> None:
    """Four plans, none finished yet (all in flight): four distinct trials, then FINISHED after
    NEW_PLAN_TRIES duplicates in a row; Tune starts no fifth trial."""
    small = {"x": [0, 1], "y": [0, 1]}
    storage = open_journal(tmp_path / "optuna.journal", "toy")
    toy = _Search(small)
    searcher = _searcher(toy.define, storage, seed=5)
    plans = [searcher.suggest(f"t{i}") for i in range(4)]
    assert all(p is not None and DUPLICATE_OF not in p for p in plans)
    assert len({p["plan"] for p in plans if p is not None}) == 4
    finished: object = searcher.suggest("t4")
    assert finished == Searcher.FINISHED
    repeats = _duplicates(storage)
    assert len(repeats) >= NEW_PLAN_TRIES and set(repeats.values()) <= {p["trial_number"] for p in plans if p}
    study = optuna.load_study(study_name="toy", storage=storage)
    assert all(study.trials[n].state == optuna.trial.TrialState.FAIL for n in repeats)


def test_ask_new_gives_distinct_configurations_then_none(tmp_path: Path) -> None:
    """The supernet search's ask/tell loop: a known configuration is told as a duplicate and
    asked past; with none new left it returns None instead of a repeat."""
    storage = open_journal(tmp_path / "optuna.journal", "toy")
    study = optuna.create_study(
        study_name="toy", storage=storage, sampler=optuna.samplers.RandomSampler(seed=2)
    )
    axes = {"x": [0, 1, 2]}
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 1})  # the same configuration twice in a row, as the supernet test does
    known: dict[str, int] = {}
    seen = []
    while (found := ask_new(study, lambda t: _plan(t, axes), known.get)) is not None:
        trial, plan = found
        known[plan] = trial.number
        seen.append(plan)
        study.tell(trial, 1.0)
    assert sorted(seen) == sorted(json.dumps({"x": x}) for x in axes["x"])
    assert seen[0] == json.dumps({"x": 1}) and _duplicates(storage)[1] == 0


# --- end to end --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_search_over_a_small_space_evaluates_each_plan_once_and_ends_short(tmp_path: Path) -> None:
    """`techniques: [quantize]` leaves the tiny model a handful of plans, fewer than `trials`:
    each is one trial, one ledger line and one MLflow child run; then the search ends, says
    so, and still writes its front."""
    from mlflow import MlflowClient

    from adacomp.platform.results.ledger import Ledger, TrialRecord
    from adacomp.platform.search.job import search
    from tests.helpers.search import search_config

    config = search_config(
        tmp_path,
        name="small",
        techniques=["quantize"],
        space={"sensitivity": False},
        fidelity={"rungs": 1},
        trials=12,
    )
    said: list[str] = []
    result = search(config, progress=False, log=said.append)
    assert result.out_dir is not None and result.run_id is not None

    records = Ledger[TrialRecord](result.out_dir / "trials.jsonl").load()
    hashes = [r.plan.hash for r in records]
    assert 1 < len(records) < 12 and len(set(hashes)) == len(hashes)
    assert all(r.duplicate_of is None for r in records)
    assert f"it ends with {len(records)} of 12 trials" in "\n".join(said)
    client = MlflowClient(result.tracking_uri)
    experiment = client.get_run(result.run_id).info.experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'"
    )
    trials = [c for c in children if "adacomp.trial" in c.data.tags]
    assert sorted(c.data.tags["adacomp.plan_hash"] for c in trials) == sorted(hashes)
    assert not any("adacomp.duplicate_of" in c.data.tags for c in trials)
    assert (result.out_dir / "front.csv").is_file()

"""The searcher's proposals: a plan drawn by the strategy becomes a trial, or, when the search
already has it, a pointer to the trial that does (no slot taken, no ledger line)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adacomp.platform.search.search_run import SearchRun
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies._base import (
    DUPLICATE_OF,
    PLAN_HASH_ATTR,
)
from adacomp.platform.strategies.plan_space import drawn_plan, plan_from_params, suggest
from adacomp.search_spaces import CompressionPlan


def define_by_run(
    config: SearchConfig, run: SearchRun, space: Any, given: Sequence[CompressionPlan] = ()
) -> Callable[[Any], dict[str, Any]]:
    """The Optuna searcher's proposal of a trial. A plan this search has evaluated or is
    evaluating comes back as `{DUPLICATE_OF: its trial}` instead: the searcher asks again, so a
    repeated plan takes no slot of `trials` and never becomes a trial, a ledger line or an
    MLflow child run (optuna_searcher.py); a new one is in flight until it is recorded.

    Every drawn plan's hash goes on its Optuna trial at once: the study then tells a proposal
    from a trial that a kill cut short while it was still being drawn (params partial or none).

    The strategy's own proposals are repaired where one layer's choice rules out another's
    (`plan_from_params`); a plan the user `given` is run as given, and fails with its reason
    if it does not build.
    """
    asked = {plan.hash for plan in given}

    def define(trial: Any) -> dict[str, Any]:
        suggest(trial, space)
        drawn = drawn_plan(trial.params, space)
        plan = drawn if drawn.hash in asked else plan_from_params(trial.params, space)
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

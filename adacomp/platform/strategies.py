"""Search strategies, registered by name: each turns a search into a Ray Tune searcher.

The Optuna strategies (`nsga2`, `tpe`, `random`) share one searcher that records each trial's
constraint values on the Optuna trial (`Trial.set_constraint`), which NSGA-II and TPE read to
learn what is feasible. The RL agent (its own issue) registers here too, with its own searcher.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from adacomp.errors import AdacompError


@dataclass(frozen=True)
class SearcherSetup:
    """What a strategy needs to build its searcher."""

    define_by_run: Callable[[optuna.Trial], dict[str, Any]]
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    trials: int  # the whole budget, finished trials included
    seed: int
    storage: optuna.storages.BaseStorage
    study_name: str
    # Flat sampler parameters of plans to evaluate first (warm start), in order.
    initial_points: tuple[dict[str, Any], ...] = ()


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def searcher(self, setup: SearcherSetup) -> Any:
        """A `ray.tune.search.Searcher` proposing configs with a `plan` (and reading results)."""
        ...


@dataclass(frozen=True)
class OptunaStrategy:
    name: str
    description: str
    make_sampler: Callable[[SearcherSetup], optuna.samplers.BaseSampler]

    def searcher(self, setup: SearcherSetup) -> Any:
        from adacomp.platform.optuna_searcher import ConstrainedOptunaSearch

        return ConstrainedOptunaSearch(
            space=setup.define_by_run,
            metric=list(setup.metrics),
            mode=list(setup.modes),
            sampler=self.make_sampler(setup),
            study_name=setup.study_name,
            storage=setup.storage,
            points_to_evaluate=[dict(p) for p in setup.initial_points] or None,
        )


def _nsga2(setup: SearcherSetup) -> optuna.samplers.BaseSampler:
    # A generation of ~1/4 of the budget: several generations even on small budgets.
    population = max(4, min(50, setup.trials // 4))
    return optuna.samplers.NSGAIISampler(population_size=population, seed=setup.seed)


def _tpe(setup: SearcherSetup) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # `multivariate` and `group` are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=max(4, min(10, setup.trials // 5)),
            multivariate=True,
            group=True,  # the space is conditional (parameters depend on the chosen technique)
            seed=setup.seed,
        )


def _random(setup: SearcherSetup) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=setup.seed)


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    if strategy.name in _STRATEGIES:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    try:
        return _STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(_STRATEGIES))
        raise AdacompError(f"strategy: unknown strategy {name!r}; expected one of: {known}") from None


def registered_strategies() -> list[str]:
    return sorted(_STRATEGIES)


register_strategy(
    OptunaStrategy("nsga2", "Optuna NSGA-II, constrained (multi-objective evolutionary)", _nsga2)
)
register_strategy(
    OptunaStrategy("tpe", "Optuna TPE, multivariate, constrained (Bayesian optimisation)", _tpe)
)
register_strategy(OptunaStrategy("random", "uniform random plans (a baseline for the others)", _random))

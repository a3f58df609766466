"""Search strategies, registered by name: each turns a search into a Ray Tune searcher.

The Optuna strategies (`nsga2`, `tpe`, `random`) share one searcher that records each trial's
constraint values on the Optuna trial (`Trial.set_constraint`), which NSGA-II and TPE read to
learn what is feasible. The RL agent (`rl`, adacomp/platform/rl/) proposes trials from the
episodes of an RLlib PPO agent that learns while the search runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna

from adacomp.errors import AdacompError

if TYPE_CHECKING:
    import torch

    from adacomp.platform.ledger import TrialRecord
    from adacomp.platform.search_config import SearchConfig
    from adacomp.search_spaces import SearchSpace


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
    # What a model-aware strategy (the RL agent) reads; the Optuna ones need none of it.
    config: SearchConfig | None = None
    space: SearchSpace | None = None
    model: torch.nn.Module | None = None
    example_input: torch.Tensor | None = None
    baseline: Mapping[str, float | None] = field(default_factory=dict)
    history: tuple[TrialRecord, ...] = ()  # this search's finished trials (a resume)
    state_dir: Path | None = None  # where the strategy may keep its own state
    on_progress: Callable[[int, Mapping[str, float]], None] | None = None  # metrics for the parent run


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def searcher(self, setup: SearcherSetup) -> Any:
        """A `ray.tune.search.Searcher` proposing configs with a `plan` (and reading results).

        The search calls its `close()`, where it has one, once Tune is done."""
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


@dataclass(frozen=True)
class RLStrategy:
    name: str = "rl"
    description: str = "AdaDeep's agent: RLlib PPO picks each layer's techniques, rewarded by the utility"

    def check(self, config: SearchConfig) -> None:
        """Before anything starts: the saved agent to start from must be there."""
        if config.rl.init_policy is not None:
            from adacomp.platform.rl.searcher import policy_module_dir

            policy_module_dir(config.rl.init_policy)

    def searcher(self, setup: SearcherSetup) -> Any:
        from adacomp.platform.rl.searcher import RLSearcher  # RLlib only when asked for

        return RLSearcher(setup)


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
register_strategy(RLStrategy())

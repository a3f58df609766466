"""Search strategies, registered by name: each turns a search into a Ray Tune searcher.

The Optuna strategies (`nsga2`, `tpe`, `random`) share one searcher that records each trial's
constraint values on the Optuna trial (`Trial.set_constraint`), which NSGA-II and TPE read to
learn what is feasible. The RL agent (`rl`, adacomp/platform/strategies/rl/) proposes trials from the
episodes of an RLlib PPO agent that learns while the search runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from adacomp.errors import AdacompError
from adacomp.platform.strategies._base import SearcherSetup, Strategy

if TYPE_CHECKING:
    from adacomp.platform.search_config import SearchConfig


class OptunaStrategy(Strategy):
    """A strategy whose plans come from an Optuna sampler, constraints told (nsga2, tpe, random)."""

    def __init__(
        self,
        name: str,
        description: str,
        make_sampler: Callable[[SearcherSetup], optuna.samplers.BaseSampler],
    ) -> None:
        super().__init__(name, description)
        self.make_sampler = make_sampler

    def sampler(self, setup: SearcherSetup) -> optuna.samplers.BaseSampler:
        return self.make_sampler(setup)

    def searcher(self, setup: SearcherSetup) -> Any:
        from adacomp.platform.strategies.optuna_searcher import ConstrainedOptunaSearch

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


class RLStrategy(Strategy):
    """AdaDeep's agent; it keeps its state in the search's `rl_agent/` and resumes from it."""

    def __init__(self) -> None:
        super().__init__(
            "rl", "AdaDeep's agent: RLlib PPO picks each layer's techniques, rewarded by the utility"
        )

    def check(self, config: SearchConfig) -> None:
        """Before anything starts: the trials must fill at least one PPO update (else the agent
        never learns nor saves itself), and the saved agent to start from must be there."""
        from adacomp.platform.strategies.rl.budget import check_budget

        check_budget(config)
        if config.rl.init_policy is not None:
            from adacomp.platform.strategies.rl.searcher import policy_module_dir

            policy_module_dir(config.rl.init_policy)

    def searcher(self, setup: SearcherSetup) -> Any:
        from adacomp.platform.strategies.rl.searcher import RLSearcher  # RLlib only when asked for

        return RLSearcher(setup)

    def warm_start(self, config: SearchConfig, earlier_search_dir: Path) -> SearchConfig:
        """Tonight's agent starts from last night's, unless the config names one to start from."""
        from adacomp.platform.strategies.rl.searcher import AGENT_DIR

        agent = earlier_search_dir / AGENT_DIR
        if config.rl.init_policy is not None or not agent.exists():
            return config
        return config.model_copy(update={"rl": config.rl.model_copy(update={"init_policy": agent})})

    def finish(self, searcher: Any) -> None:
        searcher.close()  # the agent stops and saves itself; a failure in it is raised here


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

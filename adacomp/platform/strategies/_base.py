"""What every search strategy is: a base class with default hooks, and what it is given.

A strategy turns a search into a Ray Tune searcher. The search calls its hooks in order:
`check` before anything starts, `warm_start` when a search continues from an earlier one (the
nightly searches), `searcher` to build the Tune searcher, `finish` once Tune is done. Strategies
that propose plans through an Optuna sampler also give it (`sampler`), so the supernet search's
ask/tell loop uses the same sampler as the Tune searcher. Every hook but `searcher` has a default
that does nothing, so a new strategy implements only what it needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    import torch

    from adacomp.platform.evaluate.sensitivity import SensitivityReport
    from adacomp.platform.results.ledger import TrialRecord
    from adacomp.platform.search_config import SearchConfig
    from adacomp.search_spaces import SearchSpace


@dataclass(frozen=True)
class SearchContext:
    """The search a model-aware strategy (the RL agent) reads: what is compressed and how far
    along the search is. The Optuna strategies need none of it; the supernet search has none."""

    config: SearchConfig
    space: SearchSpace
    model: torch.nn.Module
    example_input: torch.Tensor
    baseline: Mapping[str, float | None] = field(default_factory=dict)
    history: tuple[TrialRecord, ...] = ()  # this search's finished trials (a resume)
    state_dir: Path | None = None  # where the strategy may keep its own state
    on_progress: Callable[[int, Mapping[str, float]], None] | None = None  # metrics for the parent run
    sensitivity: SensitivityReport | None = None  # how much each choice of `space` can take


# The key of a define-by-run proposal that is a plan the search already has (evaluated or in
# flight), with the number of the trial that has it: the searcher asks again (optuna_searcher.py).
DUPLICATE_OF = "duplicate_of"
# The Optuna user attribute that holds a drawn plan's hash: set as soon as the plan is drawn, so a
# trial without it is one a kill cut short mid-draw (see job.py's define-by-run).
PLAN_HASH_ATTR = "adacomp:plan_hash"


@dataclass(frozen=True)
class SearcherSetup:
    """What a strategy needs to build its searcher."""

    # A proposal (plan, trial_number, seed) from an Optuna trial, or {DUPLICATE_OF: n}.
    define_by_run: Callable[[optuna.Trial], dict[str, Any]]
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    trials: int  # the whole budget, finished trials included
    seed: int
    storage: optuna.storages.BaseStorage
    study_name: str
    # Flat sampler parameters of plans to evaluate first (warm start), in order.
    initial_points: tuple[dict[str, Any], ...] = ()
    context: SearchContext | None = None


class Strategy(ABC):
    """One way to propose plans, registered by `name` (the config's `strategy`)."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def check(self, config: SearchConfig) -> None:
        """Before anything starts: refuse a config this strategy cannot run (raise AdacompError)."""

    def warm_start(self, config: SearchConfig, earlier_search_dir: Path) -> SearchConfig:
        """The config of a search that continues from the one in `earlier_search_dir`.

        The default takes nothing over; the plans of the earlier front are given to every
        strategy anyway (as `SearcherSetup.initial_points`)."""
        return config

    @abstractmethod
    def searcher(self, setup: SearcherSetup) -> Any:
        """A `ray.tune.search.Searcher` proposing configs with a `plan` (and reading results)."""

    def sampler(self, setup: SearcherSetup) -> optuna.samplers.BaseSampler | None:
        """The Optuna sampler behind this strategy's proposals, or None when it has none."""
        return None

    def finish(self, searcher: Any) -> None:
        """Once Tune is done with `searcher` (also after a failure): release what it holds."""

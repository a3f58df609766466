"""The contract every registered strategy keeps, run over each of them (nsga2, tpe, random, rl),
like the technique and device contract tests: it is a `Strategy`, its hooks accept a valid
config, it proposes plans that build on the model, it survives a failed trial and finishes
cleanly. Real Optuna studies (in memory), a real RLlib agent on a real local Ray for `rl`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from adacomp.platform.evaluate.evaluators.supernet import supernet_options, weighted_layers
from adacomp.platform.search.space import restricted_space
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies._base import SearchContext, SearcherSetup, Strategy
from adacomp.platform.strategies.plan_space import plan_from_params, suggest
from adacomp.platform.strategies.registry import get_strategy, registered_strategies
from adacomp.search_spaces import CompressionPlan, build_space, compress
from adacomp.search_spaces.supernet import Supernet, config_of
from adacomp.search_spaces.supernet.plan_space import supernet_plan_space
from adacomp.tasks import load_task, pretrained_model
from tests.helpers.search import search_config

STRATEGIES = registered_strategies()
BUILTIN = ["nsga2", "random", "rl", "tpe"]


def test_the_built_in_strategies_are_registered() -> None:
    assert set(BUILTIN) <= set(STRATEGIES)


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_is_a_strategy_under_its_name(name: str) -> None:
    strategy = get_strategy(name)
    assert isinstance(strategy, Strategy)
    assert strategy.name == name and strategy.description


@pytest.mark.parametrize("name", STRATEGIES)
def test_check_accepts_a_valid_config_and_warm_start_takes_nothing_from_an_empty_search(
    name: str, tmp_path: Path
) -> None:
    config = search_config(tmp_path, strategy=name)
    strategy = get_strategy(name)
    strategy.check(config)
    (tmp_path / "earlier").mkdir()
    assert strategy.warm_start(config, tmp_path / "earlier") == config


def test_the_rl_agent_warm_starts_from_the_agent_an_earlier_search_saved(tmp_path: Path) -> None:
    from adacomp.platform.strategies.rl.searcher import AGENT_DIR

    earlier = tmp_path / "earlier"
    (earlier / AGENT_DIR).mkdir(parents=True)
    config = search_config(tmp_path, strategy="rl")
    warmed = get_strategy("rl").warm_start(config, earlier)
    assert warmed.rl.init_policy == earlier / AGENT_DIR
    # A config that names its own agent keeps it.
    named = config.model_copy(update={"rl": config.rl.model_copy(update={"init_policy": tmp_path / "mine"})})
    assert get_strategy("rl").warm_start(named, earlier).rl.init_policy == tmp_path / "mine"


def _setup(config: SearchConfig, tmp_path: Path) -> SearcherSetup:
    task = load_task(config.task)
    model = pretrained_model(task, seed=config.seed)
    if config.evaluation == "supernet":  # the supernet's own choices (an untrained one holds the same)
        supernet = Supernet.build(model, task.example_input(2), supernet_options(config))
        space = supernet_plan_space(supernet, model, task.example_input(2))
    else:
        space = restricted_space(build_space(model, task.example_input(2)), config)

    def define(trial: optuna.Trial) -> dict[str, Any]:
        suggest(trial, space)
        return {"plan": plan_from_params(trial.params, space).to_json(indent=None)}

    return SearcherSetup(
        define_by_run=define,
        metrics=tuple(o.key for o in config.objectives),
        modes=tuple(o.mode for o in config.objectives),
        trials=config.trials,
        seed=config.seed,
        storage=optuna.storages.InMemoryStorage(),
        study_name="contract",
        context=SearchContext(
            config=config, space=space, model=model, example_input=task.example_input(2), state_dir=tmp_path
        ),
    )


def _propose(searcher: Any, trial_id: str, seconds: float = 120.0) -> dict[str, Any]:
    """Tune's loop: ask until the searcher has a proposal (an agent may still be producing one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proposal = searcher.suggest(trial_id)
        assert proposal != "FINISHED", "the searcher finished before its budget was used"
        if proposal is not None:
            return dict(proposal)
        time.sleep(0.2)
    raise AssertionError(f"no proposal within {seconds} s")


@pytest.fixture
def local_ray(request: pytest.FixtureRequest) -> None:
    """The suite's shared Ray for the strategies that need one (the RL agent); the others run without."""
    if request.node.callspec.params["name"] == "rl":
        request.getfixturevalue("shared_ray")


@pytest.mark.parametrize("evaluation", ["finetune", "supernet"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "rl" else n for n in STRATEGIES]
)
def test_a_strategy_proposes_buildable_plans_survives_a_failed_trial_and_finishes(
    name: str, evaluation: str, tmp_path: Path, local_ray: None
) -> None:
    """Over both evaluations' spaces: a supernet-mode proposal is a configuration the supernet
    extracts (its evaluator's `config_of` never refuses it) and builds through `compress`."""
    config = search_config(
        tmp_path,
        strategy=name,
        trials=4,
        evaluation=evaluation,
        rl={"episodes_per_update": 2, "env_runners": 1},
    )
    strategy = get_strategy(name)
    setup = _setup(config, tmp_path)
    sampler = strategy.sampler(setup)
    assert sampler is None or isinstance(sampler, optuna.samplers.BaseSampler)
    searcher = strategy.searcher(setup)
    try:
        for number in range(2):
            proposal = _propose(searcher, f"t{number}")
            plan = CompressionPlan.from_json(proposal["plan"])
            context = setup.context
            assert context is not None
            if evaluation == "supernet":
                supernet = Supernet.build(context.model, context.example_input, supernet_options(config))
                config_of(supernet, plan, weighted_layers(context.model))  # expressible: never refused
            compressed = compress(context.model, plan, context.example_input)
            assert compressed(context.example_input).shape == context.model(context.example_input).shape
            searcher.on_trial_complete(f"t{number}", None, error=True)  # a trial that failed
        _propose(searcher, "t2")  # and it goes on proposing after failures
    finally:
        strategy.finish(searcher)

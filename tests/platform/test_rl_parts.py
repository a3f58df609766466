"""The `rl` strategy's parts without Ray: action catalogue, masks, estimates, environment,
shaping, reward, and the plan exchange's bookkeeping (run on a plain asyncio loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from pydantic import ValidationError

from adacomp.errors import AdacompError
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies.plan_space import PRECISIONS
from adacomp.platform.strategies.registry import get_strategy
from adacomp.platform.strategies.rl.actions import (
    CATALOGUE,
    LAYER_ACTIONS,
    N_ACTIONS,
    PRECISION_ACTIONS,
    LayerChoice,
    plan_from_actions,
)
from adacomp.platform.strategies.rl.budget import agent_batch
from adacomp.platform.strategies.rl.env import PlanEnv
from adacomp.platform.strategies.rl.episode import FAILED_REWARD, OBS_SIZE, EpisodeSpec, episode_spec
from adacomp.platform.strategies.rl.exchange import PlanExchange
from adacomp.platform.strategies.rl.module import action_prior
from adacomp.platform.strategies.rl.searcher import START_RECORD, policy_module_dir
from adacomp.search_spaces import CompressionPlan, Step, build_space, compress
from adacomp.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
CONFIG = SearchConfig.model_validate(
    {
        "name": "rl-parts",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "constraints": [{"metric": "accuracy_drop", "max": 2.0}, {"metric": "storage", "max": 100_000}],
        "utility": {"accuracy": 1.0, "latency": 0.3, "storage": 0.3},
        "strategy": "rl",
    }
)


class Answers:
    """Stands in for the PlanExchange actor: answers every plan with one fixed outcome."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome
        self.plans: list[str] = []

    def evaluate(self, plan_json: str) -> dict[str, Any]:
        self.plans.append(plan_json)
        return self.outcome


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any, Any]:
    task = load_task("digits")
    model = task.build_model().eval()
    example = task.example_input(2)
    return model, example, build_space(model, example)


@pytest.fixture(scope="module")
def spec(digits: tuple[Any, Any, Any]) -> EpisodeSpec:
    model, example, space = digits
    baseline = {"accuracy": 0.98, "storage": 400_000.0, "latency_pixel4": 0.2}
    return episode_spec(CONFIG, space, model, example, baseline)


def random_episode(spec: EpisodeSpec, rng: np.random.Generator) -> list[int]:
    return [int(rng.choice(np.flatnonzero(spec.masks[step]))) for step in range(spec.steps)]


def test_the_catalogue_is_fixed_so_a_policy_carries_over_between_models() -> None:
    # 40 before int8_weights, 41 before skip_block: each appended last, earlier indices unchanged
    assert N_ACTIONS == 42 and len(LAYER_ACTIONS) == 37
    assert CATALOGUE[-1] == LayerChoice("skip_block", (), 0.0)
    assert CATALOGUE[0] == LayerChoice("none", (), 0.0)
    assert [CATALOGUE[i].describe() for i in PRECISION_ACTIONS] == [f"precision {p}" for p in PRECISIONS]


def test_masks_allow_only_what_applies_and_never_nothing(spec: EpisodeSpec) -> None:
    names = [layer.name for layer in spec.space.layers]
    assert all(mask.sum() >= 1 for mask in spec.masks)
    output = names.index("fc2")
    allowed = [CATALOGUE[i] for i in np.flatnonzero(spec.masks[output])]
    assert not any(isinstance(c, LayerChoice) and c.technique == "channel_prune" for c in allowed)
    assert set(np.flatnonzero(spec.masks[-1])) == set(PRECISION_ACTIONS)
    for row in spec.masks[:-1]:
        assert not row[list(PRECISION_ACTIONS)].any()


def test_every_allowed_choice_builds_on_its_layer(digits: tuple[Any, Any, Any], spec: EpisodeSpec) -> None:
    model, example, space = digits
    for row in range(len(space.layers)):
        for action in np.flatnonzero(spec.masks[row]):
            actions = [0] * len(space.layers) + [PRECISION_ACTIONS[0]]
            actions[row] = int(action)
            compress(model, plan_from_actions(space, actions), example)


def test_random_masked_episodes_give_valid_plans(digits: tuple[Any, Any, Any], spec: EpisodeSpec) -> None:
    model, example, space = digits
    rng = np.random.default_rng(0)
    plans = {plan_from_actions(space, random_episode(spec, rng)) for _ in range(12)}
    assert len(plans) > 6
    for plan in plans:
        compress(model, plan, example)
    with pytest.raises(ValueError, match="expected 6 actions"):
        plan_from_actions(space, [0])
    with pytest.raises(ValueError, match="must pick a precision"):
        plan_from_actions(space, [0] * 6)


def test_estimates_follow_the_choices(spec: EpisodeSpec) -> None:
    fc1 = [layer.name for layer in spec.space.layers].index("fc1")

    def action(technique: str, sparsity: float, **params: object) -> int:
        choice = LayerChoice(technique, tuple(params.items()), sparsity)
        return CATALOGUE.index(choice)

    none, rank, rank_pruned = action("none", 0.0), action("low_rank", 0.0, rank_fraction=0.1), None
    rank_pruned = action("low_rank", 0.8, rank_fraction=0.1)
    assert spec.storage_delta[fc1, none] == 0 and spec.macs_delta[fc1, none] == 0
    assert spec.storage_delta[fc1, rank] < 0 and spec.macs_delta[fc1, rank] < 0
    assert spec.storage_delta[fc1, rank_pruned] < spec.storage_delta[fc1, rank]
    assert spec.macs_delta[fc1, rank_pruned] == spec.macs_delta[fc1, rank]  # dense kernels


def test_env_passes_gymnasiums_checker_and_maps_masked_actions(spec: EpisodeSpec) -> None:
    env = PlanEnv({"spec": spec, "exchange": Answers({"utility": 0.5, "violations": [0.0, 0.0]})})
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["observations"].shape == (OBS_SIZE,) and obs["action_mask"].shape == (N_ACTIONS,)
    for _ in range(spec.steps):
        *_, terminated, _, _ = env.step(PRECISION_ACTIONS[-1])  # masked on layer steps: left alone
    assert terminated
    assert env.exchange.plans[-1] == CompressionPlan.from_mapping(
        {layer.name: [Step.of("quantize", precision=PRECISIONS[-1])] for layer in spec.space.layers}
    ).to_json(indent=None)


@pytest.mark.parametrize("shaping", [True, False])
def test_shaping_is_potential_based_so_the_return_is_the_reward(spec: EpisodeSpec, shaping: bool) -> None:
    spec = EpisodeSpec(**{**spec.__dict__, "shaping": shaping})
    outcome = {"utility": 0.7, "violations": [0.5, -1.0]}
    env = PlanEnv({"spec": spec, "exchange": Answers(outcome)})
    rng = np.random.default_rng(1)
    for _ in range(5):
        env.reset()
        rewards = []
        for action in random_episode(spec, rng):
            _, reward, *_ = env.step(action)
            rewards.append(reward)
        assert sum(rewards) == pytest.approx(spec.reward(outcome) - spec.potential(1.0, 1.0))
        if not shaping:
            assert rewards[:-1] == [0.0] * (spec.steps - 1)
        else:
            assert any(r != 0 for r in rewards[:-1]) or all(a == 0 for a in env._actions[:-1])


def test_reward_puts_feasibility_first_then_penalises_relative_violations_and_failures(
    spec: EpisodeSpec,
) -> None:
    assert spec.constraint_scales == (2.0, 100_000.0)
    assert spec.reward({"utility": 0.9, "violations": [-1.0, -5.0]}) == pytest.approx(0.9)
    # Broken: 1 (any violation) + 0.5 + 0.5 (relative, each capped at 1).
    assert spec.reward({"utility": 0.9, "violations": [1.0, 50_000.0]}) == pytest.approx(0.9 - 1 - 0.5 - 0.5)
    assert spec.reward({"utility": 0.9, "violations": [100.0, 0.0]}) == pytest.approx(0.9 - 1 - 1.0)  # capped
    # A hair past a limit scores below a feasible plan of far lower utility.
    assert spec.reward({"utility": 0.9, "violations": [0.01, 0.0]}) < spec.reward(
        {"utility": 0.2, "violations": [0.0, 0.0]}
    )
    failed = spec.reward({"failed": True, "utility": None, "violations": []})
    assert failed == spec.failed_reward < FAILED_REWARD
    assert failed < spec.reward({"utility": 0.0, "violations": [1e9, 1e9]})  # below the worst measured plan


def test_exchange_serves_known_plans_shares_waiting_ones_and_releases_on_close() -> None:
    known = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.25)]})
    new = CompressionPlan.from_mapping({"fc2": [Step.of("magnitude_prune", sparsity=0.5)]})
    other = CompressionPlan.from_mapping({"fc2": [Step.of("magnitude_prune", sparsity=0.8)]})

    async def scenario() -> None:
        exchange = PlanExchange({known.hash: {"utility": 0.4, "violations": []}})
        assert (await exchange.evaluate(known.to_json()))["status"] == "cached"
        first = asyncio.ensure_future(exchange.evaluate(new.to_json()))
        second = asyncio.ensure_future(exchange.evaluate(new.to_json()))
        third = asyncio.ensure_future(exchange.evaluate(other.to_json()))
        await asyncio.sleep(0)
        assert exchange.take(10) == [new.to_json(), other.to_json()]  # one trial per new plan
        assert exchange.take(10) == []
        exchange.complete(new.hash, {"utility": 0.8, "violations": []})
        assert (await first)["utility"] == 0.8 and (await second)["status"] == "evaluated"
        exchange.close()
        assert (await third)["status"] == "closed"
        assert (await exchange.evaluate(known.to_json()))["status"] == "closed"
        stats = exchange.stats()
        assert (stats["episodes"], stats["cache_hits"], stats["shared"], stats["proposed"]) == (5, 1, 1, 2)
        assert stats["closed"] == 2  # the waiting episode released at the end, and the one after it

    asyncio.run(scenario())


def test_init_policy_must_hold_a_saved_agent(tmp_path: Path) -> None:
    with pytest.raises(AdacompError, match=r"rl.init_policy: .* holds no saved agent"):
        policy_module_dir(tmp_path)
    module = tmp_path / "rl_agent" / "learner_group" / "learner" / "rl_module" / "default_policy"
    module.mkdir(parents=True)
    (module / "module_state.pt").write_bytes(b"")
    assert policy_module_dir(tmp_path) == module
    assert policy_module_dir(tmp_path / "rl_agent") == module
    assert policy_module_dir(module) == module


def test_init_policy_of_a_search_that_saved_no_agent_says_why(tmp_path: Path) -> None:
    (tmp_path / START_RECORD).write_text("{}")  # an rl search ran here, its agent never updated
    with pytest.raises(AdacompError, match=r"ended before its agent's first PPO update") as caught:
        policy_module_dir(tmp_path / "rl_agent")
    assert "\n" not in str(caught.value)


def _rl(**changes: Any) -> SearchConfig:
    return SearchConfig.model_validate({**CONFIG.model_dump(), "concurrency": 2, **changes})


@pytest.mark.parametrize(
    ("trials", "rl", "expected"),
    [
        (6, {}, (2, 2)),  # issue 20: 6 trials used to wait for 8 episodes; now 3 updates
        (20, {}, (2, 4)),
        (40, {}, (2, 8)),
        (60, {}, (2, 8)),
        (1, {}, (1, 1)),  # never more runners than trials
        (40, {"episodes_per_update": 3}, (2, 4)),  # each runner plays a whole share
        (40, {"episodes_per_update": 3, "env_runners": 1}, (1, 3)),
    ],
)
def test_the_default_batch_is_a_fifth_of_the_trials_in_whole_shares_per_runner(
    trials: int, rl: dict[str, Any], expected: tuple[int, int]
) -> None:
    batch = agent_batch(_rl(trials=trials, rl=rl))
    assert (batch.env_runners, batch.episodes_per_update) == expected
    get_strategy("rl").check(_rl(trials=trials, rl=rl))  # every default fits its budget


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_agent_learns_within_every_examples_budget(example: Path) -> None:
    config = SearchConfig.model_validate({**yaml.safe_load(example.read_text()), "strategy": "rl"})
    batch = agent_batch(config)
    assert config.trials // batch.episodes_per_update >= 5  # updates, even if no episode repeats
    get_strategy("rl").check(config)


def test_a_batch_the_trials_cannot_fill_is_refused_with_the_numbers() -> None:
    with pytest.raises(AdacompError) as caught:
        get_strategy("rl").check(_rl(trials=6, rl={"episodes_per_update": 8}))
    message = str(caught.value)
    assert "\n" not in message
    assert "rl.episodes_per_update 8 with 2 env runners means 8 episodes per PPO update" in message
    assert "more than trials 6" in message and "raise trials to 8" in message
    with pytest.raises(AdacompError, match=r"the default batch with 4 env runners means 4 episodes"):
        get_strategy("rl").check(_rl(trials=3, rl={"env_runners": 4}))


def test_the_cli_refuses_it_in_one_line_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: `strategy: rl`, 6 trials, 8 episodes per update ran, learned nothing, saved
    nothing, and `--init-policy runs/<name>/rl_agent` failed afterwards. Through the console
    script's entry point in this process (test_cli runs the real executable's exit code)."""
    from adacomp.platform.cli.main import main

    config = _rl(trials=6, rl={"episodes_per_update": 8}, output={"dir": str(tmp_path)})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "8 episodes per PPO update" in err
    assert not (tmp_path / config.name).exists()  # refused before the search's directory


def test_rl_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match=r"rl\.env_runners"):
        SearchConfig.model_validate({**CONFIG.model_dump(), "rl": {"env_runners": 0}})
    with pytest.raises(ValidationError, match=r"rl\.hidden"):
        SearchConfig.model_validate({**CONFIG.model_dump(), "rl": {"hidden": []}})


def test_the_untrained_agent_starts_near_the_uncompressed_model() -> None:
    prior = np.exp(action_prior(0.4))
    layer = prior[list(LAYER_ACTIONS)]
    assert layer.sum() == pytest.approx(1.0)
    assert layer[0] == pytest.approx(0.4 * 0.4)  # no technique, no pruning
    untouched_main = sum(
        p for i, p in zip(LAYER_ACTIONS, layer, strict=True) if CATALOGUE[i].technique == "none"
    )
    assert untouched_main == pytest.approx(0.4)


def test_on_a_block_the_agent_chooses_between_keeping_and_skipping_it_and_both_build(
    residual_net: Any, cnn_input: Any
) -> None:
    space = build_space(residual_net, cnn_input, blocks=True)
    baseline = {"accuracy": 0.98, "storage": 4_000.0, "latency_pixel4": 0.2}
    spec = episode_spec(CONFIG, space, residual_net, cnn_input, baseline)
    row = [layer.name for layer in space.layers].index("block")
    allowed = [CATALOGUE[i] for i in np.flatnonzero(spec.masks[row])]
    assert allowed == [LayerChoice("none", (), 0.0), LayerChoice("skip_block", (), 0.0)]
    assert spec.storage_delta[row, N_ACTIONS - 1] < 0  # skipping it saves its weights
    skip = [*([0] * len(space.layers)), PRECISION_ACTIONS[0]]
    skip[row] = N_ACTIONS - 1
    skip[row + 1] = LAYER_ACTIONS[4]  # a choice for a layer inside the skipped block: left out
    plan = plan_from_actions(space, skip)
    assert plan.steps_for("block") == (Step.of("skip_block"),) and not plan.steps_for("block.conv")
    assert compress(residual_net, plan, cnn_input)(cnn_input).shape == residual_net(cnn_input).shape

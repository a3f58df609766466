from __future__ import annotations

import optuna
import torch
from torch import nn

from adacomp.platform.strategies.plan_space import distributions, params_from_plan, plan_from_params, suggest
from adacomp.search_spaces import build_space, compress


def test_sampled_plans_are_valid_and_round_trip(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    space = build_space(cnn, cnn_input)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(15):
        trial = study.ask()
        suggest(trial, space)
        plan = plan_from_params(trial.params, space)
        assert compress(cnn, plan, cnn_input)(cnn_input).shape == (4, 10)
        again = plan_from_params(params_from_plan(plan, space), space)
        assert again == plan
        seen.add(plan.hash)
        study.tell(trial, 0.0)
    assert len(seen) == 15


def test_finished_plans_seed_a_fresh_study(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    space = build_space(cnn, cnn_input)
    source = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = source.ask()
    suggest(trial, space)
    plan = plan_from_params(trial.params, space)
    params = params_from_plan(plan, space)
    resumed = optuna.create_study()
    resumed.add_trial(
        optuna.trial.create_trial(params=params, distributions=distributions(space, params), value=1.0)
    )
    assert plan_from_params(resumed.trials[0].params, space) == plan

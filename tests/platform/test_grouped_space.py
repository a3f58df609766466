"""Grouped search spaces on the residual and MobileNet models: groups partition the layers,
share one role, and every plan a sampler draws from them builds and runs."""

from __future__ import annotations

import optuna
import pytest
import torch

from adacomp.platform.strategies.plan_space import params_from_plan, plan_from_params, suggest
from adacomp.search_spaces import build_space, compress
from adacomp.search_spaces.groups import GROUPINGS, group_layers, resolve_grouping, role
from adacomp.tasks import load_task

MODELS = ("mobilenet_digits", "shapes_resnet")


@pytest.fixture(scope="module", params=MODELS)
def model_and_space(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor, object]:
    task = load_task(request.param)
    torch.manual_seed(0)
    model = task.build_model().eval()
    example = task.example_input(2)
    return model, example, build_space(model, example)


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_groups_partition_the_layers_in_order_and_share_a_role(model_and_space: tuple, grouping: str) -> None:
    model, _, space = model_and_space
    grouped = group_layers(space, model, grouping)  # type: ignore[arg-type]
    flat = [name for entry in grouped.layers for name in entry.layer_names]
    assert sorted(flat) == sorted(layer.name for layer in space.layers)  # each layer exactly once
    firsts = [entry.layer_names[0] for entry in grouped.layers]
    order = [layer.name for layer in space.layers]
    assert firsts == sorted(firsts, key=order.index)  # groups keep the model's order
    for entry in grouped.layers:
        members = [space.layer(name) for name in entry.layer_names]
        assert len({role(model.get_submodule(m.name)) for m in members}) == 1
        assert all(m.techniques == members[0].techniques for m in members)
        assert entry.parameters == sum(m.parameters for m in members)
    assert len(grouped.layers[0].layer_names) == 1 and len(grouped.layers[-1].layer_names) == 1
    if grouping == "layer":
        assert len(grouped.layers) == len(space.layers)


def test_auto_groups_a_deep_model_and_leaves_a_small_one_alone(model_and_space: tuple) -> None:
    model, _, space = model_and_space
    coarse = group_layers(space, model, "auto")
    if len(space.layers) > 12:  # MobileNetV2: 53 layers
        assert resolve_grouping(space, model, "auto") in ("shape", "block")
        assert len(coarse.layers) < len(space.layers) / 2
    else:  # the small ResNet: 10 layers keep their own choices
        assert resolve_grouping(space, model, "auto") == "layer" and coarse == space


@pytest.mark.parametrize("grouping", ["block", "shape"])
def test_every_sampled_plan_builds_runs_and_round_trips(model_and_space: tuple, grouping: str) -> None:
    model, example, space = model_and_space
    grouped = group_layers(space, model, grouping)  # type: ignore[arg-type]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    with torch.no_grad():
        expected = model(example).shape
    distinct = set()
    for _ in range(6):
        trial = study.ask()
        suggest(trial, grouped)
        plan = plan_from_params(trial.params, grouped)
        for entry in grouped.layers:  # a group's layers carry one and the same choice
            assert len({plan.steps_for(name) for name in entry.layer_names}) == 1
        compressed = compress(model, plan, example)  # torch-pruning traces with autograd on
        with torch.no_grad():
            assert compressed(example).shape == expected
        distinct.add(plan.hash)
        assert plan_from_params(params_from_plan(plan, grouped), grouped) == plan
        study.tell(trial, 0.0)
    assert len(distinct) == 6

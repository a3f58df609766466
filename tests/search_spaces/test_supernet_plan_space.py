"""The plan space a supernet holds (issue 37): every plan a sampler can draw from it is one the
supernet extracts (config_of never refuses it), builds through `compress` the architecture the
supernet extracts, and offers only the supernet's widths, ranks and precisions."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.strategies.plan_space import plan_from_params, precision_options, suggest
from adacomp.search_spaces import CompressionPlan, Step, compress
from adacomp.search_spaces.params import ChoiceParam
from adacomp.search_spaces.sites import weight_modules
from adacomp.search_spaces.supernet import Supernet, SupernetOptions
from adacomp.search_spaces.supernet.plan_space import in_space_terms, supernet_plan_space
from adacomp.search_spaces.supernet.plans import SUPERNET_TECHNIQUES, config_of
from adacomp.tasks.mobile import MobileNetV2


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in model.parameters())


def _weighted(model: nn.Module) -> list[str]:
    return [name for name, _ in weight_modules(model) if name]


def _case(name: str, request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mobilenet":
        return MobileNetV2(width_mult=0.25).eval(), torch.randn(2, 3, 32, 32)
    model = request.getfixturevalue("cnn" if name == "cnn" else "residual_net")
    return model, request.getfixturevalue("cnn_input")


@pytest.mark.parametrize("name", ["cnn", "residual", "mobilenet"])
def test_every_plan_drawn_from_a_supernets_space_is_a_configuration_it_extracts(
    name: str, request: pytest.FixtureRequest
) -> None:
    model, x = _case(name, request)
    supernet = Supernet.build(model, x)
    space = supernet_plan_space(supernet, model, x)
    assert space.layers and "depthwise_separable" in space.techniques() <= set(SUPERNET_TECHNIQUES)
    blocks = [layer.name for layer in space.layers if "skip_block" in layer.techniques]
    assert blocks == list(supernet.layout.blocks)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(6 if name == "mobilenet" else 12):
        trial = study.ask()
        suggest(trial, space)
        plan = plan_from_params(trial.params, space)
        config = config_of(supernet, plan, _weighted(model))  # never refused
        seen.add(config.hash)
        if config.precision == "fp32":
            assert _shapes(compress(model, plan, x)) == _shapes(supernet.extract(config)), plan
    assert len(seen) > 1


def test_the_space_offers_the_supernets_choices_and_no_others(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    options = SupernetOptions(
        width_fractions=(0.5, 1.0), rank_fractions=(0.5, 1.0), precisions=("fp32", "int8")
    )
    supernet = Supernet.build(cnn, cnn_input, options)
    space = supernet_plan_space(supernet, cnn, cnn_input)
    assert precision_options(space) == ["none", "int8"]
    ratios = [
        layer.techniques["channel_prune"]["ratio"]
        for layer in space.layers
        if "channel_prune" in layer.techniques
    ]
    assert ratios and all(isinstance(r, ChoiceParam) and r.choices == (0.5,) for r in ratios)
    producers = {g.producer for g in supernet.layout.groups}
    assert {layer.site.name for layer in space.layers if "channel_prune" in layer.techniques} <= producers


def test_a_supernet_without_quantized_precisions_offers_no_precision_knob(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(cnn, cnn_input, SupernetOptions(precisions=("fp32",)))
    space = supernet_plan_space(supernet, cnn, cnn_input)
    assert "quantize" not in space.techniques()


def test_a_plan_is_written_in_the_spaces_own_values_or_refused_in_one_line(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    """A warm start's channel_prune 0.3 of 32 channels keeps 24, as the offered 0.25 does: it is
    written as 0.25 (the samplers' choices are exact values); 0.9 keeps 3, which no choice does."""
    supernet = Supernet.build(cnn, cnn_input)
    space = supernet_plan_space(supernet, cnn, cnn_input)
    producer = next(
        layer.site.name
        for layer in space.layers
        if 0.25 in getattr(layer.techniques.get("channel_prune", {}).get("ratio"), "choices", ())
    )
    plan = CompressionPlan.from_mapping({producer: [Step.of("channel_prune", ratio=0.3)]})
    written = in_space_terms(plan, space, supernet, _weighted(cnn))
    assert written == CompressionPlan.from_mapping({producer: [Step.of("channel_prune", ratio=0.25)]})
    assert config_of(supernet, written, _weighted(cnn)) == config_of(supernet, plan, _weighted(cnn))
    with pytest.raises(AdacompError, match=f"plan layer '{producer}'") as refused:
        in_space_terms(
            CompressionPlan.from_mapping({producer: [Step.of("channel_prune", ratio=0.9)]}),
            space,
            supernet,
            _weighted(cnn),
        )
    assert "\n" not in str(refused.value)

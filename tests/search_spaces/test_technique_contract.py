"""The contract every registered technique keeps, run over every layer where it applies.

Parametrised over the registry, so a technique a user registers is held to the same rules:
output shapes kept, input never mutated, parameters validated, storage reported honestly.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adacomp.search_spaces import (
    CompressionPlan,
    Step,
    compress,
    model_facts,
    registered_techniques,
    trace_sites,
)
from adacomp.search_spaces.blocks import block_sites
from adacomp.search_spaces.params import defaults
from adacomp.search_spaces.sites import LayerSite
from tests.helpers.small_models import ResidualNet, Small1D, SmallCNN, randomise_bn

TECHNIQUES = sorted(registered_techniques())


def _models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return [
        ("cnn", randomise_bn(SmallCNN()), torch.randn(3, 1, 8, 8)),
        ("1d", Small1D().eval(), torch.randn(3, 1, 20)),
        ("residual", randomise_bn(ResidualNet()), torch.randn(3, 1, 8, 8)),
    ]


def _sites(model: nn.Module, x: torch.Tensor, unit: str) -> dict[str, LayerSite]:
    """Where a technique of `unit` is planned: leaf layers, or skippable blocks."""
    leaves = trace_sites(model, x)
    return leaves if unit == "layer" else block_sites(model, x, leaves)


def _cases(technique: str) -> list[tuple[nn.Module, torch.Tensor, str]]:
    cases = []
    t = registered_techniques()[technique]
    for _, model, x in _models():
        for name, site in _sites(model, x, t.unit).items():
            if t.applies_to(model.get_submodule(name), site):
                cases.append((model, x, name))
    return cases


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_applies_somewhere_in_the_reference_models(technique: str) -> None:
    assert _cases(technique), f"{technique} applies to no layer of the reference models"


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_apply_keeps_shapes_and_never_mutates_the_layer(technique: str) -> None:
    t = registered_techniques()[technique]
    for model, x, name in _cases(technique):
        sites = _sites(model, x, t.unit)
        layer = model.get_submodule(name)
        before = copy.deepcopy(layer.state_dict())
        site = sites[name]
        replacement = t.apply(layer, site, **defaults(t.space(layer, site)))
        for key, value in layer.state_dict().items():
            assert torch.equal(value, before[key]), f"{technique} mutated {name}.{key}"
        probe = torch.randn(2, *site.input_shape)
        if t.stage == "structure":  # a lone pruned layer shrinks its own outputs only
            assert replacement(probe).shape[2:] == layer(probe).shape[2:]
        else:
            assert replacement(probe).shape == layer(probe).shape


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_compressed_model_runs_and_storage_never_grows(technique: str) -> None:
    t = registered_techniques()[technique]
    for model, x, name in _cases(technique):
        sites = _sites(model, x, t.unit)
        layer = model.get_submodule(name)
        plan = CompressionPlan.from_mapping(
            {name: [Step.of(technique, **defaults(t.space(layer, sites[name])))]}
        )
        compressed = compress(model, plan, x)
        assert compressed(x).shape == model(x).shape
        before, after = model_facts(model, x), model_facts(compressed, x, plan)
        assert after.storage_bytes <= before.storage_bytes, f"{technique} on {name}"


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_out_of_range_parameters_are_refused(technique: str) -> None:
    t = registered_techniques()[technique]
    model, x, name = _cases(technique)[0]
    sites = _sites(model, x, t.unit)
    space = t.space(model.get_submodule(name), sites[name])
    params = {**defaults(space), "no_such_param": 1}
    plan = CompressionPlan.from_mapping({name: [Step.of(technique, **params)]})
    with pytest.raises(ValueError, match="unknown parameter 'no_such_param'"):
        compress(model, plan, x)


def _layer(kind: str, inputs: int, outputs: int) -> tuple[nn.Module, LayerSite]:
    """A lone 3x3 conv or a Linear with `inputs` and `outputs` channels, and its site."""
    layer: nn.Module = (
        nn.Conv2d(inputs, outputs, 3, padding=1) if kind == "conv" else nn.Linear(inputs, outputs)
    )
    spatial = (8, 8) if kind == "conv" else ()
    site = LayerSite(
        name="layer",
        module_type=type(layer).__name__,
        input_shape=(inputs, *spatial),
        output_shape=(outputs, *spatial),
        order=0,
        is_output=False,
        flattened_from=None,
        macs=0,
    )
    return layer, site


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_fewest_channels_is_where_the_technique_stops_applying(technique: str) -> None:
    """Plan repair trusts `fewest_channels` to know what channel pruning elsewhere rules out: a
    technique that applies to a wide layer applies at those counts, and not one channel below."""
    t = registered_techniques()[technique]
    fewest_in, fewest_out = t.fewest_channels
    for kind in ("conv", "linear"):
        if not t.applies_to(*_layer(kind, 16, 16)):
            continue
        assert t.applies_to(*_layer(kind, fewest_in, fewest_out)), f"{technique} on a {kind}"
        if fewest_in > 1:
            assert not t.applies_to(*_layer(kind, fewest_in - 1, fewest_out)), f"{technique} on a {kind}"
        if fewest_out > 1:
            assert not t.applies_to(*_layer(kind, fewest_in, fewest_out - 1)), f"{technique} on a {kind}"

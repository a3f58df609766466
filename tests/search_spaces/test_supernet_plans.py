"""A supernet's configurations as compression plans (issue 37, one vocabulary): a configuration
written as a plan builds, through `compress`, the very architecture the supernet extracts, and
reads back as the same configuration; what the supernet cannot express is one line naming it."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import CompressionPlan, Step, compress
from adacomp.search_spaces.sites import weight_modules
from adacomp.search_spaces.supernet import SubnetConfig, Supernet, SupernetOptions
from adacomp.search_spaces.supernet.plans import config_of, exact_fraction, plan_of
from adacomp.tasks.mobile import MobileNetV2
from adacomp.tasks.resnet import CifarResNet


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in model.parameters())


def _weighted(model: nn.Module) -> list[str]:
    return [name for name, _ in weight_modules(model) if name]


def _cases(request: pytest.FixtureRequest) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "cnn": (request.getfixturevalue("cnn"), request.getfixturevalue("cnn_input")),
        "residual": (request.getfixturevalue("residual_net"), request.getfixturevalue("cnn_input")),
        "mobilenet": (MobileNetV2(width_mult=0.25).eval(), torch.randn(2, 3, 32, 32)),
        "resnet8": (CifarResNet(width_mult=0.5).eval(), torch.randn(2, 3, 32, 32)),
        "resnet8-streams": (CifarResNet(width_mult=0.5).eval(), torch.randn(2, 3, 32, 32)),
        "residual-streams": (request.getfixturevalue("residual_net"), request.getfixturevalue("cnn_input")),
    }


@pytest.mark.parametrize(
    "name", ["cnn", "residual", "mobilenet", "resnet8", "resnet8-streams", "residual-streams"]
)
def test_a_configuration_as_a_plan_builds_the_architecture_the_supernet_extracts(
    name: str, request: pytest.FixtureRequest
) -> None:
    """Pruned layers factorised at the pruned layer's rank, dense where factorising would not be
    smaller: parameter for parameter the same shapes, and the plan reads back to the configuration."""
    model, x = _cases(request)[name]
    supernet = Supernet.build(model, x, SupernetOptions(residual_width=name.endswith("-streams")))
    rng = random.Random(0)
    for _ in range(8 if name == "mobilenet" else 15):
        sampled = supernet.space.sample(rng)
        config = SubnetConfig.of(dict(sampled.width), dict(sampled.rank), sampled.skip, "fp32")
        plan = plan_of(supernet, config, _weighted(model))
        compressed, extracted = compress(model, plan, x), supernet.extract(config)
        assert _shapes(compressed) == _shapes(extracted), plan
        compressed.load_state_dict(extracted.state_dict())  # the same modules, by name
        assert torch.allclose(compressed.eval()(x), extracted(x), atol=1e-5)
        back = config_of(supernet, plan, _weighted(model))
        assert _shapes(supernet.extract(back)) == _shapes(extracted)
        assert back.skip == supernet.space.validate(config).skip
        gone = [p for p, _ in back.width if any(p.startswith(b + ".") for b in back.skip)]
        widths = dict(supernet.space.validate(config).width)
        assert {k: v for k, v in back.width if k not in gone} == {
            k: widths[k] for k in widths if k not in gone
        }


def test_precision_is_quantize_of_every_weighted_layer(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    config = SubnetConfig.of(precision="int8")
    plan = plan_of(supernet, config, _weighted(cnn))
    assert {name for name, _ in plan.layers} == set(_weighted(cnn))
    assert all(steps[-1] == Step.of("quantize", precision="int8") for _, steps in plan.layers)
    assert config_of(supernet, plan, _weighted(cnn)) == supernet.space.validate(config)
    assert config_of(supernet, CompressionPlan(), _weighted(cnn)) == supernet.space.largest("fp32")


def test_what_the_supernet_cannot_express_is_one_line_naming_the_layer(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    weighted = _weighted(cnn)
    producer = supernet.layout.groups[0].producer
    conv = next(name for name in weighted if name.startswith("features"))

    def refused(mapping: dict[str, list[Step]], match: str) -> None:
        with pytest.raises(AdacompError, match=match) as raised:
            config_of(supernet, CompressionPlan.from_mapping(mapping), weighted)
        assert "\n" not in str(raised.value)

    refused(
        {conv: [Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.5)]}, "no alternative for 'fire'"
    )
    refused({producer: [Step.of("channel_prune", ratio=0.1)]}, "the supernet holds")
    refused({weighted[0]: [Step.of("quantize", precision="int8")]}, "every weighted layer or none")
    mixed = {
        name: [Step.of("quantize", precision="int8" if i else "fp16")] for i, name in enumerate(weighted)
    }
    refused(mixed, "one precision")
    ranked = supernet.layout.rank_layers[0].name
    refused({ranked: [Step.of("low_rank", rank_fraction=1.0)]}, "no smaller than the layer itself")


def test_a_skipped_block_is_skip_block_on_the_block_and_nothing_inside_it(
    residual_net: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(residual_net, cnn_input)
    weighted = _weighted(residual_net)
    (block,) = supernet.layout.blocks
    config = SubnetConfig.of(skip=(block,), precision="int8")
    plan = plan_of(supernet, config, weighted)
    assert plan.steps_for(block) == (Step.of("skip_block"),)
    assert not [layer for layer, _ in plan.layers if layer.startswith(block + ".")]
    assert config_of(supernet, plan, weighted) == supernet.space.validate(config)  # int8: all that is left
    inner = CompressionPlan.from_mapping(
        {block: [Step.of("skip_block")], f"{block}.conv": [Step.of("low_rank", rank_fraction=0.5)]}
    )
    with pytest.raises(AdacompError, match=f"'{block}.conv' is inside '{block}', which the plan skips"):
        config_of(supernet, inner, weighted)
    with pytest.raises(AdacompError, match=r"'stem'.*not a skippable block of this supernet"):
        config_of(supernet, CompressionPlan.from_mapping({"stem": [Step.of("skip_block")]}), weighted)


def test_pruning_any_producer_of_a_residual_stream_prunes_the_stream(
    residual_net: nn.Module, cnn_input: torch.Tensor
) -> None:
    """As channel_prune does in a fine-tuned trial (the dependency graph prunes the whole join),
    `block.conv` pruned is the stream `stem` names pruned; a plan pruning both is refused."""
    supernet = Supernet.build(residual_net, cnn_input, SupernetOptions(residual_width=True))
    weighted = _weighted(residual_net)
    by_stem = CompressionPlan.from_mapping({"stem": [Step.of("channel_prune", ratio=0.5)]})
    by_block = CompressionPlan.from_mapping({"block.conv": [Step.of("channel_prune", ratio=0.5)]})
    config = config_of(supernet, by_stem, weighted)
    assert dict(config.width)["stem"] == 4
    assert config_of(supernet, by_block, weighted) == config
    assert _shapes(compress(residual_net, by_block, cnn_input)) == _shapes(supernet.extract(config))
    both = CompressionPlan.from_mapping(
        {"stem": [Step.of("channel_prune", ratio=0.5)], "block.conv": [Step.of("channel_prune", ratio=0.5)]}
    )
    with pytest.raises(
        AdacompError, match=r"residual add joins its channels with those of '(stem|block.conv)'"
    ):
        config_of(supernet, both, weighted)


def test_exact_fraction_gives_back_every_rank_of_every_size_at_once() -> None:
    """round(2/3, 6) = 0.666667 asks for ceil(2.000001) = 3: the fraction falls back to 2/3
    itself (stepping down from 0.666667 one float at a time would take billions of steps)."""
    for full in range(1, 130):
        for rank in range(1, full + 1):
            fraction = exact_fraction(rank, full)
            assert max(1, math.ceil(fraction * full)) == rank, (rank, full, fraction)

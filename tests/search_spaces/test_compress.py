from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import CompressionPlan, Step, compress, model_facts
from tests.helpers.compression_plans import MIXED


def test_compress_never_mutates_its_input(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    state = copy.deepcopy(cnn.state_dict())
    structure = repr(cnn)
    before = cnn(cnn_input)
    compress(cnn, MIXED, cnn_input)
    assert repr(cnn) == structure
    for key, value in cnn.state_dict().items():
        assert torch.equal(value, state[key]), key
    torch.testing.assert_close(cnn(cnn_input), before)


def test_mixed_plan_really_shrinks_and_runs(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    compressed = compress(cnn, MIXED, cnn_input)
    assert compressed(cnn_input).shape == (4, 10)
    assert compressed.features.conv1.out_channels == 4
    assert compressed.features.bn1.num_features == 4
    before, after = model_facts(cnn, cnn_input), model_facts(compressed, cnn_input, MIXED)
    assert after.parameters < before.parameters / 2
    assert after.macs < before.macs
    assert after.storage_bytes < before.storage_bytes / 4


def test_empty_plan_is_an_exact_copy(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    copy_ = compress(cnn, CompressionPlan(), cnn_input)
    assert copy_ is not cnn
    torch.testing.assert_close(copy_(cnn_input), cnn(cnn_input))


def test_channel_prune_follows_residual_joins(residual_net: nn.Module) -> None:
    x = torch.randn(2, 1, 6, 6)
    plan = CompressionPlan.from_mapping({"stem": [Step.of("channel_prune", ratio=0.5)]})
    pruned = compress(residual_net, plan, x)
    # the residual add ties stem's outputs to the block's conv outputs and the head's inputs
    assert pruned.stem.out_channels == 4
    assert pruned.block.conv.in_channels == 4 and pruned.block.conv.out_channels == 4
    assert pruned.block.bn.num_features == 4
    assert pruned.head.in_channels == 4
    assert pruned(x).shape == (2, 10)


def test_channel_prune_shrinks_the_flattened_classifier(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"features.conv3": [Step.of("channel_prune", ratio=0.5)]})
    pruned = compress(cnn, plan, cnn_input)
    assert pruned.fc1.in_features == 8 * 2 * 2
    assert pruned(cnn_input).shape == (4, 10)


def test_channel_prune_then_gap_head_sees_the_new_shape(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping(
        {"features.conv3": [Step.of("channel_prune", ratio=0.5)], "fc1": [Step.of("gap_head")]}
    )
    pruned = compress(cnn, plan, cnn_input)
    assert pruned.fc1.linear.in_features == 8
    assert pruned(cnn_input).shape == (4, 10)


def test_works_on_1d_convs(net1d: nn.Module, input1d: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping(
        {
            "conv1": [Step.of("channel_prune", ratio=0.5)],
            "conv2": [Step.of("fire", squeeze_ratio=1.0, expand_1x1_fraction=0.25)],
            "fc": [Step.of("gap_head")],
        }
    )
    assert compress(net1d, plan, input1d)(input1d).shape == (4, 10)


def _plan(layers: dict[str, list[Step]]) -> CompressionPlan:
    return CompressionPlan.from_mapping(layers)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            _plan({"nope": [Step.of("low_rank", rank_fraction=0.5)]}),
            "plan layer 'nope' is unknown; compressible layers: features.conv1",
        ),
        (_plan({"features.bn1": [Step.of("low_rank", rank_fraction=0.5)]}), "'low_rank' does not apply"),
        (
            _plan({"fc2": [Step.of("channel_prune", ratio=0.5)]}),
            "output layer.*techniques that apply: low_rank, magnitude_prune, quantize",
        ),
        (
            _plan({"fc1": [Step.of("gap_head"), Step.of("low_rank", rank_fraction=0.5)]}),
            "step 2 'low_rank' does not apply after the earlier steps",
        ),
        (
            _plan({"fc1": [Step.of("quantize", precision="int8"), Step.of("low_rank", rank_fraction=0.5)]}),
            "cannot follow 'quantize'",
        ),
        (
            _plan({"fc1": [Step.of("low_rank", rank_fraction=0.5), Step.of("channel_prune", ratio=0.5)]}),
            "order: structure, module, export",
        ),
        (
            _plan(
                {"fc1": [Step.of("magnitude_prune", sparsity=0.5), Step.of("low_rank", rank_fraction=0.5)]}
            ),
            "prune last",
        ),
        (
            _plan({"fc1": [Step.of("low_rank", rank_fraction=0.5), Step.of("low_rank", rank_fraction=0.5)]}),
            "appears twice",
        ),
        (
            _plan({"fc1": [Step.of("low_rank", rank_fraction=1.5)]}),
            r"rank_fraction: 1.5 is outside \[0.05, 1.0\]",
        ),
        (_plan({"fc1": [Step.of("low_rank")]}), "missing parameter 'rank_fraction'"),
        (
            _plan({"fc1": [Step.of("quantize", precision="int4")]}),
            "expected one of 'int8', 'int8_per_tensor', 'int8_weights', 'fp16'",
        ),
        (
            _plan({"fc1": [Step.of("teleport")]}),
            "unknown technique 'teleport'; registered techniques: channel_prune",
        ),
        (
            _plan(
                {
                    "fc1": [Step.of("quantize", precision="int8")],
                    "fc2": [Step.of("quantize", precision="fp16")],
                }
            ),
            "one plan uses one precision",
        ),
    ],
)
def test_invalid_plans_are_refused_with_reasons(
    cnn: nn.Module, cnn_input: torch.Tensor, plan: CompressionPlan, message: str
) -> None:
    with pytest.raises(AdacompError, match=message) as info:
        compress(cnn, plan, cnn_input)
    assert "\n" not in str(info.value)

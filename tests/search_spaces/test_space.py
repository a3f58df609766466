from __future__ import annotations

import json

import torch
from torch import nn

from adacomp.search_spaces import FloatParam, build_space, compress
from adacomp.search_spaces.groups import group_layers
from adacomp.search_spaces.techniques.channel_groups import ChannelGraph


def test_space_lists_compressible_layers_in_execution_order(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    space = build_space(cnn, cnn_input)
    assert [layer.name for layer in space.layers] == [
        "features.conv1",
        "features.conv2",
        "features.conv3",
        "fc1",
        "fc2",
    ]
    assert "fire" not in space.layer("features.conv1").techniques  # one input channel
    assert "fire" in space.layer("features.conv2").techniques
    assert "gap_head" in space.layer("fc1").techniques
    assert "channel_prune" not in space.layer("fc2").techniques  # output layer
    rank_fraction = space.layer("fc1").techniques["low_rank"]["rank_fraction"]
    assert isinstance(rank_fraction, FloatParam) and rank_fraction.high == 1.0


def test_space_is_plain_json(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    data = json.loads(json.dumps(build_space(cnn, cnn_input).to_dict()))
    fc1 = next(layer for layer in data["layers"] if layer["name"] == "fc1")
    assert fc1["techniques"]["low_rank"]["rank_fraction"]["type"] == "float"
    assert fc1["flattened_from"] == [16, 2, 2]


def test_example_plan_is_valid_and_compresses(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = build_space(cnn, cnn_input).example_plan()
    assert plan
    assert compress(cnn, plan, cnn_input)(cnn_input).shape == (4, 10)


def test_derived_spaces_keep_what_plan_repair_reads(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    space = build_space(cnn, cnn_input)
    assert [group.layer for group in space.channels.groups] == [
        "features.conv1",
        "features.conv2",
        "features.conv3",
        "fc1",
    ]
    assert group_layers(space, cnn, "layer").channels == space.channels
    assert space.restricted_to(["channel_prune", "fire"]).channels == space.channels
    assert space.restricted_to(["fire"]).channels == ChannelGraph()  # nothing is pruned: nothing to repair

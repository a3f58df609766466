"""A supernet-mode search's first proposals: the uniform configurations, mildest first, then the
same ones one block shallower everywhere (issue 37: depth is where MobileNetV2's speed is)."""

from __future__ import annotations

import torch
from torch import nn

from adacomp.platform.search.supernet_mode import uniform_plans
from adacomp.search_spaces.supernet import Supernet, SupernetOptions
from adacomp.search_spaces.supernet.plan_space import supernet_plan_space


def test_uniform_plans_run_mildest_first_then_with_every_block_skipped(
    residual_net: nn.Module, cnn_input: torch.Tensor
) -> None:
    options = SupernetOptions(width_fractions=(1.0, 0.5), rank_fractions=(1.0, 0.5), depth=True)
    supernet = Supernet.build(residual_net, cnn_input, options)
    space = supernet_plan_space(supernet, residual_net, cnn_input)
    plans = uniform_plans(space, (1.0, 0.5), ("fp32", "int8"))
    assert len(plans) == 4
    skipped = [any(s.technique == "skip_block" for _, steps in p.layers for s in steps) for p in plans]
    assert skipped == [False, False, True, True]
    assert all(
        s.technique != "skip_block" or layer == "block"
        for p in plans
        for layer, steps in p.layers
        for s in steps
    )
    assert [p.steps_for("head")[0].technique for p in plans] == ["quantize", "channel_prune"] * 2
    assert all(not layer.startswith("block.") for p in plans[2:] for layer, _ in p.layers)

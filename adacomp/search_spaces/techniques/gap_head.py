"""Global-average-pooling replacement of a fully-connected classifier head.

A Linear that reads a flattened C x H x W feature map holds C*H*W weights per output. Averaging
the map over its positions first leaves C, an H*W-fold saving (Lin et al., Network in Network;
SqueezeNet). The new weights are the per-channel sums of the old ones, which reproduces the
outputs exactly when the feature map is constant over positions, and is the least-change start
for fine-tuning otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from adacomp.search_spaces.params import ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Technique


def pooled_weight(weight: torch.Tensor, channels: int, positions: int) -> torch.Tensor:
    """The (out, channels) weight over averaged positions from a flattened head's (out, C*P):
    torch flattens (C, H, W) channel-major, feature index = c * positions + p."""
    return weight.reshape(weight.shape[0], channels, positions).sum(2)


class GapLinear(nn.Module):
    """Un-flatten to (C, positions), average the positions, then a Linear over C."""

    def __init__(self, channels: int, positions: int, linear: nn.Linear) -> None:
        super().__init__()
        self.channels = channels
        self.positions = positions
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.reshape(x.shape[0], self.channels, self.positions).mean(dim=2)  # (N, C)
        return self.linear(pooled)


class GlobalAveragePoolingHead(Technique):
    name = "gap_head"
    summary = "average the feature map before the classifier: C*H*W -> C inputs"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not isinstance(layer, nn.Linear):
            return f"applies to a Linear that reads a flattened feature map, not {type(layer).__name__}"
        if site.flattened_from is None:
            return "its input is not a flattened feature map"
        if math.prod(site.flattened_from[1:]) < 2:
            return "the flattened feature map has a single position"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {}

    @torch.no_grad()
    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        assert isinstance(layer, nn.Linear) and site.flattened_from is not None
        channels = site.flattened_from[0]
        positions = math.prod(site.flattened_from[1:])
        linear = nn.Linear(
            channels,
            layer.out_features,
            bias=layer.bias is not None,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
        )
        linear.weight.copy_(pooled_weight(layer.weight.detach(), channels, positions))
        if layer.bias is not None:
            linear.bias.copy_(layer.bias.detach())
        return GapLinear(channels, positions, linear)

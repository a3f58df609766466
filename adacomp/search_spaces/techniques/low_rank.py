"""Low-rank factorisation by truncated SVD.

Linear W (out x in) becomes reduce (rank x in) then expand (out x rank). A conv's weight,
matricised as (out) x (in * kernel), becomes a conv with `rank` filters of the original kernel,
stride and padding, then a 1x1 conv to `out` channels. At rank_fraction 1.0 the outputs are
reproduced up to float error; the singular values are split evenly (sqrt) between the factors so
that fine-tuning sees balanced gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adacomp.search_spaces.params import FloatParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Technique
from adacomp.search_spaces.techniques._conv import is_standard_conv, make_conv

RANK_FRACTION = FloatParam(0.05, 1.0, default=0.25)


class LowRank(nn.Module):
    """`expand(reduce(x))`: the factorised replacement of a Linear or conv."""

    def __init__(self, reduce: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.reduce = reduce
        self.expand = expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.expand(self.reduce(x))
        return out


def full_rank(layer: nn.Module) -> int:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return min(weight.shape[0], math.prod(weight.shape[1:]))


def rank_for(layer: nn.Module, fraction: float) -> int:
    return max(1, math.ceil(fraction * full_rank(layer)))


def split_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with left @ right the best rank-`rank` approximation of `matrix`."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    root = s[:rank].sqrt()
    left = (u[:, :rank] * root).to(matrix.dtype)
    right = (root[:, None] * vh[:rank]).to(matrix.dtype)
    return left, right


class LowRankFactorization(Technique):
    name = "low_rank"
    summary = "truncated-SVD factorisation of a Linear or conv into two thinner layers"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if isinstance(layer, nn.Linear) or is_standard_conv(layer):
            return None
        return f"applies to Linear and ungrouped Conv layers, not {type(layer).__name__}"

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"rank_fraction": RANK_FRACTION}

    @torch.no_grad()
    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        rank = rank_for(layer, float(params["rank_fraction"]))
        assert isinstance(layer.weight, torch.Tensor)
        weight = layer.weight.detach()
        bias = layer.bias if isinstance(layer.bias, torch.Tensor) else None
        left, right = split_svd(weight.flatten(1), rank)  # (out, r), (r, in * kernel)
        if isinstance(layer, nn.Linear):
            reduce: Any = nn.Linear(layer.in_features, rank, bias=False)
            expand: Any = nn.Linear(rank, layer.out_features, bias=bias is not None)
            reduce.weight.copy_(right)
            expand.weight.copy_(left)
        else:
            assert isinstance(layer, nn.modules.conv._ConvNd)
            reduce = make_conv(
                layer,
                layer.in_channels,
                rank,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                bias=False,
            )
            reduce.padding_mode = layer.padding_mode
            ones = (1,) * len(layer.kernel_size)
            expand = make_conv(layer, rank, layer.out_channels, ones, bias=bias is not None)
            reduce.weight.copy_(right.reshape(rank, *weight.shape[1:]))
            expand.weight.copy_(left.reshape(layer.out_channels, rank, *ones))
        if bias is not None:
            expand.bias.copy_(bias.detach())
        return LowRank(reduce, expand).to(weight.device)

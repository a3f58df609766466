"""Depthwise-separable replacement of a standard conv (the MobileNet building block).

A k x k conv over C_in channels becomes a depthwise k x k conv producing `multiplier` maps per
input channel, then a 1x1 pointwise conv. It is initialised from the original weights, not at
random: for each input channel c, the slice W[:, c] (out x k*k) is approximated by its top
`multiplier` singular triplets, which is exactly the depthwise/pointwise structure. With
multiplier = k*k the outputs are reproduced.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from adacomp.search_spaces.params import IntParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Technique
from adacomp.search_spaces.techniques._conv import is_standard_conv, kernel_numel, make_conv
from adacomp.search_spaces.techniques.low_rank import split_svd

MAX_MULTIPLIER = 4


@torch.no_grad()
def separable_weights(weight: torch.Tensor, multiplier: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(depthwise (in*m, 1, *k), pointwise (out, in*m, *1)) weights closest to the dense `weight`
    (out, in, *k): per input channel, the top `multiplier` singular triplets of its slice."""
    c_out, c_in, kernel = int(weight.shape[0]), int(weight.shape[1]), tuple(weight.shape[2:])
    m = multiplier
    ones = (1,) * len(kernel)
    dw = weight.new_zeros((c_in * m, 1, *kernel))
    pw = weight.new_zeros((c_out, c_in * m, *ones))
    for c in range(c_in):
        left, right = split_svd(weight[:, c].reshape(c_out, -1), m)  # (out, r), (r, k*k)
        r = left.shape[1]  # may be < m when out < m
        dw[c * m : c * m + r, 0] = right.reshape(r, *kernel)
        pw[:, c * m : c * m + r] = left.reshape(c_out, r, *ones)
    return dw, pw


class DepthwiseSeparable(nn.Module):
    def __init__(self, depthwise: nn.Module, pointwise: nn.Module) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DepthwiseSeparableConv(Technique):
    name = "depthwise_separable"
    summary = "depthwise k x k conv + pointwise 1x1 conv, initialised from the original weights"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not is_standard_conv(layer):
            return f"applies to ungrouped Conv layers, not {type(layer).__name__}"
        assert isinstance(layer, nn.modules.conv._ConvNd)
        if kernel_numel(layer) == 1:
            return "a 1x1 conv is already pointwise"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        assert isinstance(layer, nn.modules.conv._ConvNd)
        high = min(MAX_MULTIPLIER, kernel_numel(layer))
        return {"multiplier": IntParam(1, high, default=1)}

    @torch.no_grad()
    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        assert isinstance(layer, nn.modules.conv._ConvNd)
        m = int(params["multiplier"])
        c_in, c_out, kernel = layer.in_channels, layer.out_channels, layer.kernel_size
        depthwise = make_conv(
            layer,
            c_in,
            c_in * m,
            kernel,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=c_in,
            bias=False,
        )
        depthwise.padding_mode = layer.padding_mode
        ones = (1,) * len(kernel)
        pointwise = make_conv(layer, c_in * m, c_out, ones, bias=layer.bias is not None)
        dw, pw = separable_weights(layer.weight.detach(), m)
        depthwise.weight.copy_(dw)
        pointwise.weight.copy_(pw)
        if layer.bias is not None:
            pointwise.bias.copy_(layer.bias.detach())  # type: ignore[union-attr]
        return DepthwiseSeparable(depthwise, pointwise)

"""Fire-module replacement of a conv (SqueezeNet): squeeze 1x1 + ReLU, expand 1x1 and k x k.

The squeeze layer reduces C_in to `squeeze` channels, then two expand convs (1x1 for the first
`e1` output channels, k x k for the rest) are concatenated. Initialised from the original
weights rather than at random: the weight matricised as (out * k*k) x C_in is factorised by SVD
to rank r = squeeze / 2, and the squeeze layer holds +B and -B so that
ReLU(Bx) - ReLU(-Bx) = Bx passes the signal through the ReLU unchanged. With squeeze_ratio 2.0
(r = C_in) and no 1x1 expand channels the outputs are reproduced; 1x1 expand channels start
from the centre tap of the k x k kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adacomp.search_spaces.params import FloatParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Technique
from adacomp.search_spaces.techniques._conv import is_standard_conv, make_conv
from adacomp.search_spaces.techniques.low_rank import split_svd

SQUEEZE_RATIO = FloatParam(0.125, 2.0, default=0.5)
EXPAND_1X1 = FloatParam(0.0, 0.75, default=0.5)


class Fire(nn.Module):
    def __init__(self, squeeze: nn.Module, expand1: nn.Module | None, expand_k: nn.Module) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.activation = nn.ReLU()
        self.expand1 = expand1
        self.expand_k = expand_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.activation(self.squeeze(x))
        if self.expand1 is None:
            return self.expand_k(s)
        return torch.cat([self.expand1(s), self.expand_k(s)], dim=1)


def squeeze_rank(in_channels: int, ratio: float) -> int:
    """Rank r of the factorisation; the squeeze layer has 2r channels (+B and -B)."""
    return max(1, round(ratio * in_channels / 2))


class FireModule(Technique):
    name = "fire"
    summary = "SqueezeNet fire module (squeeze 1x1, expand 1x1 + k x k), initialised by SVD"
    fewest_channels = (4, 2)  # something to squeeze; one 1x1 and one k x k expand channel

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not is_standard_conv(layer):
            return f"applies to ungrouped Conv layers, not {type(layer).__name__}"
        assert isinstance(layer, nn.modules.conv._ConvNd)
        k = layer.kernel_size
        if any(size < 3 or size % 2 == 0 for size in k):
            return f"needs an odd kernel of size >= 3, got {k}"
        if any(d != 1 for d in layer.dilation):
            return "needs dilation 1"
        if layer.padding != tuple((size - 1) // 2 for size in k) or layer.padding_mode != "zeros":
            return "needs 'same' zero padding so the 1x1 and k x k branches line up"
        fewest_in, fewest_out = self.fewest_channels
        if layer.out_channels < fewest_out:
            return f"needs at least {fewest_out} output channels"
        if layer.in_channels < fewest_in:
            return f"needs at least {fewest_in} input channels: there is nothing to squeeze"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"squeeze_ratio": SQUEEZE_RATIO, "expand_1x1_fraction": EXPAND_1X1}

    @torch.no_grad()
    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        assert isinstance(layer, nn.modules.conv._ConvNd)
        c_in, c_out, kernel = layer.in_channels, layer.out_channels, layer.kernel_size
        rank = min(squeeze_rank(c_in, float(params["squeeze_ratio"])), c_in)
        e1 = min(round(float(params["expand_1x1_fraction"]) * c_out), c_out - 1)
        ones = (1,) * len(kernel)
        weight = layer.weight.detach()  # (out, in, *k)
        # (out, in, *k) -> (out, *k, in) -> (out * k*k, in)
        matrix = weight.movedim(1, -1).reshape(-1, c_in)
        left, right = split_svd(matrix, rank)  # (out*k*k, r), (r, in)
        rank = right.shape[0]
        squeeze = make_conv(layer, c_in, 2 * rank, ones, bias=False)
        squeeze.weight.copy_(torch.cat([right, -right]).reshape(2 * rank, c_in, *ones))
        # expand kernels: (out * k*k, r) -> (out, *k, r) -> (out, r, *k), then [+A, -A]
        a = left.reshape(c_out, *kernel, rank).movedim(-1, 1)
        a = torch.cat([a, -a], dim=1)  # (out, 2r, *k)
        expand_k = make_conv(
            layer,
            2 * rank,
            c_out - e1,
            kernel,
            stride=layer.stride,
            padding=layer.padding,
            bias=layer.bias is not None,
        )
        expand_k.weight.copy_(a[e1:])
        expand1 = None
        if e1 > 0:
            expand1 = make_conv(layer, 2 * rank, e1, ones, stride=layer.stride, bias=layer.bias is not None)
            centre: tuple[Any, ...] = (slice(0, e1), slice(None), *(size // 2 for size in kernel))
            expand1.weight.copy_(a[centre].reshape(e1, 2 * rank, *ones))
        if layer.bias is not None:
            bias = layer.bias.detach()
            expand_k.bias.copy_(bias[e1:])  # type: ignore[union-attr]
            if expand1 is not None:
                expand1.bias.copy_(bias[:e1])  # type: ignore[union-attr]
        return Fire(squeeze, expand1, expand_k)

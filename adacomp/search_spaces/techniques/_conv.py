"""Helpers shared by the techniques that rebuild convolutions of any dimension (1-D, 2-D, 3-D)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

_CONV_BY_DIM: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def conv_dim(layer: nn.modules.conv._ConvNd) -> int:
    return len(layer.kernel_size)


def make_conv(
    like: nn.modules.conv._ConvNd,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, ...],
    *,
    stride: tuple[int, ...] | int = 1,
    padding: tuple[int, ...] | int | str = 0,
    dilation: tuple[int, ...] | int = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.modules.conv._ConvNd:
    """A conv of the same dimension, dtype and device as `like`."""
    cls = _CONV_BY_DIM[conv_dim(like)]
    conv: nn.modules.conv._ConvNd = cls(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        device=like.weight.device,
        dtype=like.weight.dtype,
    )
    return conv


def kernel_numel(layer: nn.modules.conv._ConvNd) -> int:
    return math.prod(layer.kernel_size)


def is_standard_conv(layer: nn.Module) -> bool:
    """A plain conv (no groups, no transposition): what the factorising techniques rebuild."""
    return (
        isinstance(layer, nn.modules.conv._ConvNd)
        and not isinstance(layer, nn.modules.conv._ConvTransposeNd)
        and layer.groups == 1
        and conv_dim(layer) in _CONV_BY_DIM
    )

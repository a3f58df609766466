"""Blocks of the mobile networks people ship, for the models calibration generates and the
unseen architectures it is checked on.

Each carries kernels a plain conv stack does not: squeeze-and-excitation (MobileNetV3,
EfficientNet: global pool, two 1x1 convs, a hard-sigmoid or sigmoid gate, a broadcast
multiply) and ShuffleNetV2's unit (a channel split, a branch of 1x1 / depthwise / 1x1 convs, a
concat and a channel shuffle by reshape and transpose, whose shapes ONNX computes at run time).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's shuffle: (N, g * c, H, W) -> view (N, g, c, H, W) -> transpose -> back."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, channels, height, width)


class SqueezeExcite(nn.Module):
    """Channel attention: x * gate(conv(act(conv(mean over H, W)))), the gate hard-sigmoid
    (MobileNetV3) or sigmoid (EfficientNet)."""

    def __init__(self, channels: int, reduction: int = 4, hard: bool = True) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate: nn.Module = nn.Hardsigmoid() if hard else nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return out


def _conv_bn(
    c_in: int, c_out: int, k: int, stride: int, groups: int, act: nn.Module | None
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return [*layers, act] if act is not None else layers


class MBConv(nn.Module):
    """MobileNetV3 / EfficientNet's block: 1x1 expand, k x k depthwise, squeeze-and-excitation,
    1x1 project, a skip when shapes allow; hard-swish or SiLU."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expand: int, *, hard: bool = True) -> None:
        super().__init__()
        hidden = c_in * expand
        act: type[nn.Module] = nn.Hardswish if hard else nn.SiLU
        self.body = nn.Sequential(
            *_conv_bn(c_in, hidden, 1, 1, 1, act()),
            *_conv_bn(hidden, hidden, k, stride, hidden, act()),
            SqueezeExcite(hidden, hard=hard),
            *_conv_bn(hidden, c_out, 1, 1, 1, None),
        )
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return x + out if self.skip else out


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit. Stride 1: split the channels in two, the second half through 1x1,
    3x3 depthwise, 1x1; concat; shuffle. Stride 2: both halves from the whole input (the first
    through a depthwise + 1x1), concat, shuffle. `c_out` is even; at stride 1 it is `c_in`."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out % 2 or (stride == 1 and c_in != c_out):
            raise ValueError(
                f"a shuffle unit needs an even c_out equal to c_in at stride 1, got {c_in}->{c_out}"
            )
        self.stride = stride
        half = c_out // 2
        self.left: nn.Module = (
            nn.Identity()
            if stride == 1
            else nn.Sequential(
                *_conv_bn(c_in, c_in, 3, 2, c_in, None), *_conv_bn(c_in, half, 1, 1, 1, nn.ReLU())
            )
        )
        c_right = half if stride == 1 else c_in
        self.right = nn.Sequential(
            *_conv_bn(c_right, half, 1, 1, 1, nn.ReLU()),
            *_conv_bn(half, half, 3, stride, half, None),
            *_conv_bn(half, half, 1, 1, 1, nn.ReLU()),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            kept, through = x.chunk(2, dim=1)
            out = torch.cat((kept, self.right(through)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return channel_shuffle(out, 2)

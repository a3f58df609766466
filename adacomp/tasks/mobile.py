"""Task `mobilenet_digits`: a MobileNetV2 (Sandler et al., 2018) on digits upscaled to 96x96.

The accuracy here is beside the point: the network has the layer mix that real mobile models
have (depthwise convs, inverted residuals, ReLU6, global pooling), at tens of millions of MACs,
so latency and compression studies see realistic costs. Written out here because torchvision
is not a dependency.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from adacomp.tasks._base import DataSplits, Task, TaskError, TrainBudget
from adacomp.tasks.augment import RandomCrop
from adacomp.tasks.datasets import TensorPairDataset
from adacomp.tasks.digits import digits_arrays

__all__ = ["InvertedResidual", "MobileNetV2", "UpscaledDigits", "make_divisible", "mobile_task"]

IMAGE_SIZE = 96
# Shifts of up to 8 pixels (a digit stroke) keep 1,078 training digits from being memorised;
# no flip: a mirrored digit is another symbol.
SHIFT = RandomCrop(padding=8)
# (expansion t, output channels c, repeats n, first stride s): Table 2 of the MobileNetV2 paper.
BLOCK_TABLE: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280  # the paper keeps 1280 for width multipliers below 1


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `value` (reference code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_act(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias: BN follows), BatchNorm, ReLU6, as modules named conv, bn, act."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            bn=nn.BatchNorm2d(out_channels),
            act=nn.ReLU6(),
        )
    )


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, linear project 1x1; adds the input when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expansion != 1:  # with t=1 the expand conv would be an identity-sized 1x1; skipped
            layers["expand"] = conv_bn_act(in_channels, hidden, 1)
        layers["depthwise"] = conv_bn_act(hidden, hidden, 3, stride=stride, groups=hidden)
        layers["project"] = nn.Conv2d(hidden, out_channels, 1, bias=False)
        layers["project_bn"] = nn.BatchNorm2d(out_channels)  # linear bottleneck: no activation
        self.layers = nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_residual:
            return x + self.layers(x)
        return self.layers(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier; every op but the residual add is a named module."""

    def __init__(self, num_classes: int = 10, width_mult: float = 0.5) -> None:
        super().__init__()
        if not width_mult > 0:
            raise TaskError(f"width_mult={width_mult!r}; expected a number > 0")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = conv_bn_act(3, channels, 3, stride=2)  # (3, 96, 96) -> (c, 48, 48)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for expansion, base_out, repeats, first_stride in BLOCK_TABLE:
            out_channels = make_divisible(base_out * width_mult)
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                name = f"block{len(blocks) + 1}"
                blocks[name] = InvertedResidual(channels, out_channels, stride, expansion)
                channels = out_channels
        self.blocks = nn.Sequential(blocks)  # -> (c, 3, 3) at 96x96 input: total stride 32
        last = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        self.head = conv_bn_act(channels, last, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()  # (last, 1, 1) -> (last,)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, 3, H, W)
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.flatten(self.pool(x)))


class UpscaledDigits(Dataset[tuple[Tensor, Tensor]]):
    """8x8 digits resized to RGB 96x96 on access: 108 KiB per image (float32) are never all in memory."""

    def __init__(self, base: TensorPairDataset, size: int = IMAGE_SIZE) -> None:
        self.base = base
        self.size = size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.base[index]  # image: (1, 8, 8)
        big = F.interpolate(
            image.unsqueeze(0), size=(self.size, self.size), mode="bilinear", align_corners=False
        )  # (1, 1, size, size)
        return big[0].expand(3, -1, -1).contiguous(), label  # (3, size, size)


def mobile_task() -> Task:
    images, labels, (train, val, test) = digits_arrays()  # the same split as `digits`

    def subset(indices: np.ndarray) -> UpscaledDigits:
        index = torch.from_numpy(indices)
        return UpscaledDigits(TensorPairDataset(images[index], labels[index]))

    return Task(
        name="mobilenet_digits",
        description="MobileNetV2 x0.5 on sklearn digits upscaled to 3x96x96, for latency studies",
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        num_classes=10,
        build_model=MobileNetV2,
        data=DataSplits(train=subset(train), val=subset(val), test=subset(test)),
        # 12 cosine epochs left +0.9 pt (mean of 3 seeds) to a run 3x as long; 36 are the budget
        # (3x gains -0.28 pt at 36; benchmarks/baselines.py).
        train_budget=TrainBudget(epochs=36, batch_size=32, lr=2e-3, schedule="cosine"),
        finetune_budget=TrainBudget(epochs=1, batch_size=32, lr=1e-3),
        augment=SHIFT,
    )

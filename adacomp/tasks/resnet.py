"""Task `shapes_resnet`: a CIFAR-style ResNet (He et al., 2016, section 4.2) on generated shapes.

The CIFAR-size workload of adacomp: 32x32 RGB inputs, three stages of basic residual blocks
(16/32/64 channels times a width multiplier), projection shortcuts where the shape changes, and
tens of millions of MACs, so latency matters on the host and on phones, and channel pruning
must follow the residual dependencies. The data are rendered by `adacomp.tasks.shapes` (CIFAR
itself cannot be downloaded at run time); training uses the usual CIFAR augmentation (random
crop after 4-pixel padding, horizontal flip) and a cosine schedule.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from adacomp.tasks._base import DataSplits, Task, TaskError, TrainBudget
from adacomp.tasks.augment import RandomCrop
from adacomp.tasks.datasets import TensorPairDataset
from adacomp.tasks.shapes import IMAGE_SIZE, render_shapes

__all__ = ["CROP_AND_FLIP", "BasicBlock", "CifarResNet", "shapes_resnet_task"]

STAGE_CHANNELS = (16, 32, 64)
SPLIT_SIZES = (6000, 1000, 1000)  # train / val / test, rendered with different seeds
SPLIT_SEEDS = (0, 1, 2)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs and a shortcut (1x1 conv + BN where stride or width change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        result: Tensor = self.relu2(out + self.shortcut(x))
        return result


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: n=1 is ResNet-8, n=3 ResNet-20; named modules throughout."""

    def __init__(self, num_classes: int = 10, blocks_per_stage: int = 1, width_mult: float = 1.0) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise TaskError(f"blocks_per_stage={blocks_per_stage!r}; expected an integer >= 1")
        if not width_mult > 0:
            raise TaskError(f"width_mult={width_mult!r}; expected a number > 0")
        widths = [max(8, round(c * width_mult)) for c in STAGE_CHANNELS]
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(widths[0]),
                act=nn.ReLU(),
            )
        )
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        channels = widths[0]
        for index, width in enumerate(widths):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for b in range(blocks_per_stage):
                stride = 2 if index > 0 and b == 0 else 1
                blocks[f"block{b + 1}"] = BasicBlock(channels, width, stride)
                channels = width
            stages[f"stage{index + 1}"] = nn.Sequential(blocks)
        self.stages = nn.Sequential(stages)  # 32x32 -> 8x8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, 3, 32, 32)
        out: Tensor = self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))
        return out


# CIFAR augmentation: a random 32x32 crop of the 4-pixel zero-padded image and a horizontal
# flip with probability 1/2 (every shape class is mirror-symmetric up to its tilt).
CROP_AND_FLIP = RandomCrop(padding=4, flip=True)


def shapes_resnet_task() -> Task:
    def split(size: int, seed: int) -> TensorPairDataset:
        images, labels = render_shapes(size, seed=seed)
        return TensorPairDataset(torch.from_numpy(images), torch.from_numpy(labels))

    train, val, test = (split(size, seed) for size, seed in zip(SPLIT_SIZES, SPLIT_SEEDS, strict=True))
    return Task(
        name="shapes_resnet",
        description="ResNet-8 (CIFAR-style) on 10 generated 32x32 RGB shape classes, cluttered and noisy",
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        num_classes=10,
        build_model=CifarResNet,
        data=DataSplits(train=train, val=val, test=test),
        # 15 cosine epochs left +1.2 pt to a run 3x as long; at 45, 3x gains +0.1 pt (baselines.py).
        train_budget=TrainBudget(epochs=45, batch_size=128, lr=3e-3, weight_decay=5e-4, schedule="cosine"),
        finetune_budget=TrainBudget(epochs=2, batch_size=128, lr=1e-3, weight_decay=5e-4),
        augment=CROP_AND_FLIP,
    )

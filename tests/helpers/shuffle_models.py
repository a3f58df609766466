"""A ShuffleNetV2-style network written from its paper (Ma et al. 2018), small enough for tests
(its unit: adacomp/platform/ops/mobile_blocks.py, which calibration generates too).

What makes it hard for tools that read a graph statically: the basic unit splits its input in
two along channels (`chunk`, ONNX `Split`), sends one half through a branch and concatenates the
other back unchanged, and every unit ends with a channel shuffle (reshape to groups, transpose,
reshape back) whose shapes are computed from the input's own (`Shape` -> `Reshape`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from adacomp.platform.ops.mobile_blocks import ShuffleUnit
from adacomp.search_spaces import CompressionPlan, Step, export_onnx
from adacomp.tasks import DataSplits, Task, TrainBudget
from adacomp.tasks.datasets import TensorPairDataset


class TinyShuffleNet(nn.Module):
    """Stem, a stage of three units (one down-sampling), a 1x1 conv, global pool, classifier.
    Input (N, 3, 32, 32)."""

    def __init__(self, num_classes: int = 10, width: int = 24) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stage = nn.Sequential(
            ShuffleUnit(16, width, 2), ShuffleUnit(width, width, 1), ShuffleUnit(width, width, 1)
        )
        self.conv = nn.Sequential(nn.Conv2d(width, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.stage(self.pool(self.stem(x))))
        out: Tensor = self.head(x.mean((2, 3)))
        return out


def tiny_shufflenet() -> tuple[nn.Module, Tensor]:
    """The network (eval mode, seeded weights) and an example input."""
    torch.manual_seed(0)
    return TinyShuffleNet().eval(), torch.randn(1, 3, 32, 32)


@functools.cache
def tiny_shufflenet_onnx(precision: str | None = None) -> bytes:
    """`tiny_shufflenet` exported to ONNX, every conv and the classifier quantized to `precision`
    ("int8", "fp16", ...) by the quantize technique when given. Cached: an export takes a second."""
    model, example = tiny_shufflenet()
    if precision is None:
        return export_onnx(model, example)
    weighted = [name for name, layer in model.named_modules() if isinstance(layer, nn.Conv2d | nn.Linear)]
    plan = CompressionPlan.from_mapping(
        {name: [Step.of("quantize", precision=precision)] for name in weighted}
    )
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((4, *example.shape[1:])).astype(np.float32) for _ in range(2)]
    return export_onnx(model, example, plan=plan, calibration=calibration)


def shuffle_task() -> Task:
    """The network as a `module:function` task on a few random images, for `adacomp space`."""
    generator = torch.Generator().manual_seed(0)
    data = TensorPairDataset(torch.randn(16, 3, 32, 32, generator=generator), torch.arange(16) % 10)
    return Task(
        name="tiny_shufflenet",
        description="ShuffleNetV2-style network on random images",
        input_shape=(3, 32, 32),
        num_classes=10,
        build_model=TinyShuffleNet,
        data=DataSplits(data, data, data),
        train_budget=TrainBudget(steps=1),
        finetune_budget=TrainBudget(steps=1),
    )


__all__ = [
    "ShuffleUnit",
    "TinyShuffleNet",
    "shuffle_task",
    "tiny_shufflenet",
    "tiny_shufflenet_onnx",
]

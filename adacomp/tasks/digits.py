"""Task `digits`: sklearn's bundled 8x8 handwritten digits and a small CNN.

Small enough to train in seconds on a laptop CPU, yet with convolutions, BatchNorm and
linear layers, so every compression technique has something to bite on.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from adacomp.tasks._base import DataSplits, Task, TrainBudget
from adacomp.tasks.datasets import TensorPairDataset, stratified_split

__all__ = ["DigitsCNN", "digits_arrays", "digits_task"]

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test
SPLIT_SEED = 0


class DigitsCNN(nn.Module):
    """Three conv blocks and two linear layers, every op a named module for readable plans."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 16, 3, padding=1),
                bn1=nn.BatchNorm2d(16),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(16, 32, 3, padding=1),
                bn2=nn.BatchNorm2d(32),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),  # (32, 8, 8) -> (32, 4, 4)
                conv3=nn.Conv2d(32, 64, 3, padding=1),
                bn3=nn.BatchNorm2d(64),
                relu3=nn.ReLU(),
            )
        )
        self.flatten = nn.Flatten()  # (64, 4, 4) -> (1024,)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, 1, 8, 8)
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[Tensor, Tensor, tuple[np.ndarray, ...]]:
    """Images (N, 1, 8, 8) in [0, 1], labels (N,), and train/val/test index arrays."""
    from sklearn.datasets import load_digits  # here, not at import: seconds every process pays

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    splits = stratified_split(labels.numpy(), SPLIT_FRACTIONS, seed=SPLIT_SEED)
    return images, labels, tuple(splits)


def digits_task() -> Task:
    images, labels, (train, val, test) = digits_arrays()

    def subset(indices: np.ndarray) -> TensorPairDataset:
        index = torch.from_numpy(indices)
        return TensorPairDataset(images[index], labels[index])

    return Task(
        name="digits",
        description="sklearn 8x8 handwritten digits (1797 images, 10 classes), small CNN",
        input_shape=(1, 8, 8),
        num_classes=10,
        build_model=DigitsCNN,
        data=DataSplits(train=subset(train), val=subset(val), test=subset(test)),
        train_budget=TrainBudget(epochs=15, batch_size=64, lr=2e-3),
        finetune_budget=TrainBudget(epochs=2, batch_size=64, lr=1e-3),
    )

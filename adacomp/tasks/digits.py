"""Task `digits`: sklearn's bundled 8x8 handwritten digits and a small CNN.

Small enough to train in seconds on a laptop CPU, yet with convolutions, BatchNorm and
linear layers, so every compression technique has something to bite on.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

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
    pixels, targets = _digits_table()
    images = torch.from_numpy(np.asarray(pixels, dtype=np.float32).reshape(-1, 8, 8) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    splits = stratified_split(labels.numpy(), SPLIT_FRACTIONS, seed=SPLIT_SEED)
    return images, labels, tuple(splits)


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 64) and labels (N,) of the digits file scikit-learn ships, read as its own
    `load_digits` reads it (one CSV row per image, the label last) but without importing
    scikit-learn, which costs every process that builds the task about a second."""
    spec = importlib.util.find_spec("sklearn")  # locates the package; runs none of it
    origin = spec.origin if spec is not None else None
    path = Path(origin).parent / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is None or not path.is_file():  # pragma: no cover - a scikit-learn that moved its data
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.asarray(bunch.data), np.asarray(bunch.target)
    with gzip.open(path, "rt") as rows:
        table = np.loadtxt(rows, delimiter=",", ndmin=2)
    return table[:, :-1], table[:, -1].astype(np.int64)


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

"""Task `mnist1d`: the MNIST-1D benchmark, generated locally, and a 1-D CNN.

MNIST-1D (Greydanus, 2020) separates architectures far better than MNIST while staying tiny
(40 samples per signal). It is generated here from the package's templates: its download
path (`get_dataset`) is never used, so the task works offline.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from adacomp.tasks._base import DataSplits, Task, TrainBudget
from adacomp.tasks.cache_dir import kept_arrays, package_version
from adacomp.tasks.datasets import TensorPairDataset, stratified_split

__all__ = ["Mnist1dCNN", "mnist1d_task"]

NUM_SAMPLES = 4000  # 3200 train+val, 800 test after mnist1d's own 80/20 split
GENERATOR_SEED = 42  # mnist1d's default, so the data matches the published benchmark's recipe
VAL_FRACTION = 0.2  # of mnist1d's train portion
SPLIT_SEED = 0


class Mnist1dCNN(nn.Module):
    """Three strided Conv1d blocks and two linear layers, all named modules."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv1d(1, 32, 5, padding=2),  # (1, 40) -> (32, 40)
                bn1=nn.BatchNorm1d(32),
                relu1=nn.ReLU(),
                conv2=nn.Conv1d(32, 64, 3, stride=2, padding=1),  # -> (64, 20)
                bn2=nn.BatchNorm1d(64),
                relu2=nn.ReLU(),
                conv3=nn.Conv1d(64, 64, 3, stride=2, padding=1),  # -> (64, 10)
                bn3=nn.BatchNorm1d(64),
                relu3=nn.ReLU(),
            )
        )
        self.flatten = nn.Flatten()  # (64, 10) -> (640,)
        self.fc1 = nn.Linear(64 * 10, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, 1, 40)
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


@lru_cache(maxsize=1)
def _generate() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from mnist1d's generator. It takes about 2 s, so the
    first process on a machine keeps the arrays in the cache folder (`kept_arrays`, keyed on
    mnist1d's version and the arguments) and the others read them back."""
    key = f"mnist1d {package_version('mnist1d')}|samples={NUM_SAMPLES}|seed={GENERATOR_SEED}"
    names = ("x", "y", "x_test", "y_test")
    kept = kept_arrays("mnist1d", key, names, _make_dataset)
    return (
        np.asarray(kept["x"], dtype=np.float32),
        np.asarray(kept["y"], dtype=np.int64),
        np.asarray(kept["x_test"], dtype=np.float32),
        np.asarray(kept["y_test"], dtype=np.int64),
    )


def _make_dataset() -> dict[str, np.ndarray]:
    """mnist1d's generator, run here.

    The generator reseeds Python's and numpy's global RNGs; their states are restored so that
    loading a task does not change the random numbers the caller sees next.
    """
    # Here, not at import: mnist1d imports matplotlib.pyplot, seconds every process would pay.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = NUM_SAMPLES
    args.seed = GENERATOR_SEED
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def mnist1d_task() -> Task:
    x_train, y_train, x_test, y_test = _generate()
    train, val = stratified_split(y_train, (1.0 - VAL_FRACTION, VAL_FRACTION), seed=SPLIT_SEED)

    def pairs(x: np.ndarray, y: np.ndarray) -> TensorPairDataset:
        # (N, 40) -> (N, 1, 40): one input channel for Conv1d
        return TensorPairDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))

    return Task(
        name="mnist1d",
        description="MNIST-1D (4000 generated 40-sample signals, 10 classes), 1-D CNN",
        input_shape=(1, 40),
        num_classes=10,
        build_model=Mnist1dCNN,
        data=DataSplits(
            train=pairs(x_train[train], y_train[train]),
            val=pairs(x_train[val], y_train[val]),
            test=pairs(x_test, y_test),
        ),
        # 30 epochs at a constant lr left +1.0 pt to a 3x longer run; at 90 cosine epochs 3x gains
        # +0.37 pt on the mean of seeds 0-2 (95.54 -> 95.92 %, benchmarks/baselines.py): 3 test
        # images of 800, just over the 0.3-pt target.
        train_budget=TrainBudget(epochs=90, batch_size=64, lr=2e-3, schedule="cosine"),
        finetune_budget=TrainBudget(epochs=3, batch_size=64, lr=1e-3),
    )

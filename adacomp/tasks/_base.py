"""The task contract: what a model-to-compress brings with it.

A Task bundles everything the rest of adacomp needs to compress a model without knowing its
domain: a way to build a fresh model, data splits, and the budgets to train and to recover it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from adacomp.errors import AdacompError

__all__ = ["Augment", "DataSplits", "Task", "TaskError", "TrainBudget", "dataset_len"]

# A batch transform for training only: (inputs, generator) -> inputs of the same shape. It draws
# its randomness from the generator train() seeds, so training stays reproducible.
Augment = Callable[[Tensor, torch.Generator], Tensor]
SCHEDULES = ("constant", "cosine")

# Fixed so that example inputs and calibration sets are the same in every process: exported
# graphs, int8 scales and caches keyed on them must not depend on global RNG state.
_EXAMPLE_SEED = 0
_CALIBRATION_SEED = 0


class TaskError(AdacompError):
    """A task, budget or weights file given by the user is unusable; the message says why."""


@dataclass(frozen=True)
class TrainBudget:
    """Budget of one training run; steps wins over epochs when both are set."""

    epochs: float = 1.0  # fractional epochs allowed, e.g. 0.5 for a quick recovery
    steps: int | None = None
    batch_size: int = 64
    lr: float = 2e-3  # AdamW; 2e-3 trains the small built-in CNNs in a few epochs
    weight_decay: float = 0.0  # decoupled (AdamW)
    # "cosine" anneals the lr to 0 over the run: what makes a fixed budget converge.
    schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise TaskError(f"TrainBudget.epochs={self.epochs!r}; expected a number > 0")
        if self.steps is not None and self.steps < 1:
            raise TaskError(f"TrainBudget.steps={self.steps!r}; expected an integer >= 1 or None")
        if self.batch_size < 1:
            raise TaskError(f"TrainBudget.batch_size={self.batch_size!r}; expected an integer >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TaskError(f"TrainBudget.lr={self.lr!r}; expected a number > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TaskError(f"TrainBudget.weight_decay={self.weight_decay!r}; expected a number >= 0")
        if self.schedule not in SCHEDULES:
            raise TaskError(f"TrainBudget.schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}")

    def num_steps(self, num_samples: int) -> int:
        """Optimizer steps this budget allows on a dataset of `num_samples` samples."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * num_samples / self.batch_size))


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test splits; each item is (input without batch dim, int64 class label)."""

    train: Dataset[tuple[Tensor, Tensor]]
    val: Dataset[tuple[Tensor, Tensor]]
    test: Dataset[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Task:
    """A model family plus its data and budgets: the unit adacomp compresses and measures."""

    name: str
    description: str
    input_shape: tuple[int, ...]  # one sample, no batch dim, e.g. (1, 8, 8)
    num_classes: int
    build_model: Callable[[], nn.Module]  # fresh, untrained; the caller seeds torch.manual_seed
    data: DataSplits
    train_budget: TrainBudget  # trains the baseline from scratch
    finetune_budget: TrainBudget  # recovers a compressed model; much smaller
    augment: Augment | None = None  # applied to training batches only (baseline and fine-tune)

    def example_input(self, batch_size: int = 1) -> Tensor:
        """A fixed random batch for tracing and export; the same in every process."""
        if batch_size < 1:
            raise TaskError(f"batch_size={batch_size!r}; expected an integer >= 1")
        generator = torch.Generator().manual_seed(_EXAMPLE_SEED)
        return torch.randn((batch_size, *self.input_shape), generator=generator)

    def calibration_batches(self, num_batches: int = 4, batch_size: int = 32) -> list[np.ndarray]:
        """Real training inputs for int8 calibration, chosen by a fixed shuffle of the train split.

        Calibrating on train data (never val/test) keeps evaluation honest; the fixed shuffle
        makes the int8 scales reproducible. Wraps around when the split is smaller than asked.
        """
        if num_batches < 1:
            raise TaskError(f"num_batches={num_batches!r}; expected an integer >= 1")
        if batch_size < 1:
            raise TaskError(f"batch_size={batch_size!r}; expected an integer >= 1")
        train = self.data.train
        size = dataset_len(train)
        generator = torch.Generator().manual_seed(_CALIBRATION_SEED)
        order = torch.randperm(size, generator=generator).tolist()
        batches: list[np.ndarray] = []
        for b in range(num_batches):
            indices = [order[(b * batch_size + i) % size] for i in range(batch_size)]
            inputs = torch.stack([train[i][0] for i in indices])
            batches.append(inputs.numpy().astype(np.float32, copy=False))
        return batches


def dataset_len(dataset: Dataset[tuple[Tensor, Tensor]]) -> int:
    """len() of a map-style dataset; training and evaluation need sized, non-empty data."""
    if not isinstance(dataset, Sized):
        raise TaskError(f"dataset {type(dataset).__name__} has no len(); expected a sized Dataset")
    size = len(dataset)
    if size < 1:
        raise TaskError(f"dataset {type(dataset).__name__} is empty; expected at least 1 sample")
    return size

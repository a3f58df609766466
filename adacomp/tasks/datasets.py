"""In-memory datasets and the deterministic split the built-in tasks share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorPairDataset", "stratified_split"]


class TensorPairDataset(Dataset[tuple[Tensor, Tensor]]):
    """Inputs and labels held as two tensors; typed as pairs, unlike torch's TensorDataset."""

    def __init__(self, inputs: Tensor, labels: Tensor, class_names: Sequence[str] = ()) -> None:
        if inputs.shape[0] != labels.shape[0]:
            raise ValueError(f"{inputs.shape[0]} inputs but {labels.shape[0]} labels")
        self.inputs = inputs.to(torch.float32)
        self.labels = labels.to(torch.int64)
        self.class_names = tuple(class_names)  # label -> name, where the data named them

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.labels[index]


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], *, seed: int = 0) -> list[np.ndarray]:
    """Index arrays, one per fraction, each keeping the class balance of `labels`.

    Stratifying keeps small splits (a few hundred digits) from missing classes, and a fixed
    seed makes the splits identical in every process, so cached baselines stay valid.
    """
    if not fractions or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions={fractions!r}; expected positive numbers summing to 1")
    # Imported here: scikit-learn costs seconds to import, paid by every process (each CLI call,
    # each Ray trial worker) that only names a task.
    from sklearn.model_selection import train_test_split

    remaining = np.arange(len(labels))
    parts: list[np.ndarray] = []
    left = 1.0
    for fraction in fractions[:-1]:
        taken, remaining = train_test_split(
            remaining,
            train_size=fraction / left,
            stratify=labels[remaining],
            random_state=seed,
        )
        parts.append(np.sort(taken))
        left -= fraction
    parts.append(np.sort(remaining))
    return parts

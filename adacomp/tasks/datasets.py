"""In-memory datasets and the deterministic split the built-in tasks share."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from adacomp.tasks.cache_dir import kept_arrays, package_version

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

    scikit-learn draws them, and importing it costs about a second, paid by every process (each
    CLI call, each Ray trial worker) that builds a task. The indices depend only on the labels,
    the fractions, the seed and scikit-learn's version, so the first process on a machine keeps
    them in the cache folder (`splits/`, `kept_arrays`) and the others read them back.
    """
    if not fractions or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions={fractions!r}; expected positive numbers summing to 1")
    labels = np.asarray(labels)
    key = f"{hashlib.sha256(np.ascontiguousarray(labels.astype(np.int64)).tobytes()).hexdigest()}"
    key += f"|{[float(f) for f in fractions]}|{seed}|scikit-learn {package_version('scikit-learn')}"
    names = [f"part{i}" for i in range(len(fractions))]

    def draw() -> dict[str, np.ndarray]:
        return dict(zip(names, _draw_split(labels, fractions, seed), strict=True))

    def partitions(parts: dict[str, np.ndarray]) -> bool:
        joined = np.sort(np.concatenate(list(parts.values())))
        return bool(np.array_equal(joined, np.arange(len(labels))))

    parts = kept_arrays("splits", key, names, draw, valid=partitions)
    return [np.asarray(parts[name], dtype=np.int64) for name in names]


def _draw_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import train_test_split  # the second of imports kept above

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

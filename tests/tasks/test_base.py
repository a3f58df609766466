from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adacomp.errors import AdacompError
from adacomp.tasks import TaskError, TrainBudget, load_task


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0.0),
        ("epochs", float("nan")),
        ("steps", 0),
        ("batch_size", 0),
        ("lr", -1e-3),
        ("lr", float("inf")),
        ("weight_decay", -0.1),
    ],
)
def test_budget_rejects_bad_values_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(TaskError, match=rf"^TrainBudget\.{field}=.*; expected"):
        TrainBudget(**{field: value})  # type: ignore[arg-type]
    assert issubclass(TaskError, AdacompError) and issubclass(TaskError, ValueError)


def test_budget_is_a_frozen_value_and_steps_win_over_epochs() -> None:
    budget = TrainBudget(epochs=0.5, batch_size=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.lr = 1.0  # type: ignore[misc]
    assert budget.num_steps(1000) == 8  # ceil(0.5 * 1000 / 64)
    assert TrainBudget(epochs=100, steps=3).num_steps(1000) == 3
    assert TrainBudget(epochs=0.001).num_steps(10) == 1


def test_example_input_is_deterministic_and_shaped() -> None:
    task = load_task("digits")
    torch.manual_seed(123)  # the global RNG must not matter
    first = task.example_input(3)
    torch.manual_seed(456)
    assert first.shape == (3, 1, 8, 8) and first.dtype == torch.float32
    assert torch.equal(first, task.example_input(3))
    with pytest.raises(TaskError, match="batch_size=0"):
        task.example_input(0)


def test_calibration_batches_come_from_the_train_split() -> None:
    task = load_task("digits")
    batches = task.calibration_batches(num_batches=3, batch_size=16)
    assert len(batches) == 3
    assert all(b.shape == (16, 1, 8, 8) and b.dtype == np.float32 for b in batches)
    assert all(np.array_equal(a, b) for a, b in zip(batches, task.calibration_batches(3, 16), strict=True))
    train_rows = {row.tobytes() for row in task.data.train.inputs.numpy()}  # type: ignore[attr-defined]
    assert all(sample.tobytes() in train_rows for batch in batches for sample in batch)
    # more samples than the split holds: wraps around instead of failing
    assert len(task.calibration_batches(num_batches=2, batch_size=1000)) == 2
    with pytest.raises(TaskError, match="num_batches=0"):
        task.calibration_batches(num_batches=0)

"""A `module:function` task for the CLI tests: digits with budgets of a few dozen steps."""

from __future__ import annotations

from dataclasses import replace

from adacomp.tasks import Task, TrainBudget, load_task


def tiny_digits() -> Task:
    return replace(
        load_task("digits"),
        name="tiny_digits",
        train_budget=TrainBudget(steps=60, batch_size=64, lr=3e-3),
        finetune_budget=TrainBudget(steps=10, batch_size=64, lr=1e-3),
    )


def not_a_task() -> int:
    return 3

"""Factories that `load_task("tests.tasks.custom_task_fixture:...")` imports in the registry tests."""

from __future__ import annotations

from dataclasses import replace

from adacomp.tasks import Task, TrainBudget, load_task

NOT_CALLABLE = 3


def make_task() -> Task:
    """Digits under another name with budgets of a few steps, as a user's own task would be."""
    return replace(
        load_task("digits"),
        name="custom digits/v1",  # deliberately not a portable file name
        train_budget=TrainBudget(steps=5),
        finetune_budget=TrainBudget(steps=2),
    )


def not_a_task() -> int:
    return 3

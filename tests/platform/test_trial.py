"""One trial end to end on a tiny task, with the real farm (emulated + host devices)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from adacomp.device_farm import Farm, FarmConfig, MeasureSettings
from adacomp.device_farm.config import EmulatedSpec, HostSpec
from adacomp.platform.evaluate.trial import COST_INFEASIBLE, TrialContext, baseline_metrics, evaluate_plan
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, Step
from adacomp.tasks import TrainBudget, load_task, pretrained_model


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> TrialContext:
    task = replace(
        load_task("digits"), train_budget=TrainBudget(steps=60), finetune_budget=TrainBudget(steps=5)
    )
    config = SearchConfig.model_validate(
        {
            "name": "t",
            "task": "digits",
            "targets": ["pixel4", "host"],
            "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
            "constraints": [{"metric": "storage", "max": 200_000}],
            "utility": {"accuracy": 1.0, "latency": 0.5, "storage": 0.5},
        }
    )
    farm = Farm(
        FarmConfig(
            devices=(
                EmulatedSpec(name="pixel4", kind="emulated", profile="pixel4", device_class="pixel4"),
                HostSpec(name="host", kind="host"),
            )
        )
    )
    ctx = TrialContext(
        config=config,
        task=task,
        model=pretrained_model(task, cache_dir=tmp_path_factory.mktemp("cache")),
        farm=farm,
        settings=MeasureSettings(warmup_runs=1, min_runs=5, max_runs=30, max_cv=10),
        calibration=task.calibration_batches(2, 16),
    )
    ctx.baseline = baseline_metrics(ctx)
    return ctx


def test_a_plan_becomes_metrics_utility_and_feasibility(context: TrialContext) -> None:
    plan = CompressionPlan.from_mapping(
        {"fc1": [Step.of("low_rank", rank_fraction=0.1), Step.of("quantize", precision="int8_per_tensor")]}
    )
    result = evaluate_plan(context, plan)
    assert not result.failed, result.reason
    m = result.metrics
    assert m["storage"] is not None and m["storage"] < context.baseline["storage"]  # type: ignore[operator]
    assert m["latency_pixel4"] is not None and m["latency_host"] is not None
    assert m["accuracy_drop"] == pytest.approx(100 * (context.baseline["accuracy"] - m["accuracy"]))  # type: ignore[operator]
    assert result.feasible  # storage well under 200 kB
    assert result.utility is not None and result.utility > 0
    assert TrialRecord.from_result(0, result).report()["plan_hash"] == plan.hash


def test_baseline_violates_the_storage_constraint(context: TrialContext) -> None:
    result = evaluate_plan(context, CompressionPlan())
    assert not result.feasible and result.violations[0] > 0


def test_a_failing_plan_is_a_failed_result_not_an_exception(context: TrialContext) -> None:
    result = evaluate_plan(context, CompressionPlan.from_mapping({"nope": [Step.of("gap_head")]}))
    assert result.failed and "plan layer 'nope' is unknown" in (result.reason or "")
    assert TrialRecord.from_result(0, result).report()["failed"] == 1.0


def test_a_device_error_fails_the_trial(context: TrialContext) -> None:
    broken = replace(context, config=context.config.model_copy(update={"targets": ("pixel4", "missing")}))
    result = evaluate_plan(broken, CompressionPlan())
    assert result.failed and "unknown device 'missing'" in (result.reason or "")


def test_a_plan_that_breaks_a_cost_constraint_is_never_fine_tuned(
    context: TrialContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cost first: the uncompressed model breaks the storage constraint, known before training;
    its record says why, holds its costs and its accuracy before fine-tuning, and no training ran.
    A plan within the budget is fine-tuned as before."""
    import adacomp.platform.evaluate.trial as trial_module

    trained: list[int] = []
    real_train = trial_module.train

    def counting_train(*args: object, **kwargs: object) -> object:
        trained.append(1)
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trial_module, "train", counting_train)
    stopped = evaluate_plan(context, CompressionPlan())
    assert trained == [] and not stopped.failed and not stopped.feasible
    assert stopped.reason is not None and stopped.reason.startswith(COST_INFEASIBLE)
    assert re.search(r"storage is \d+, limit storage <= 200000 B$", stopped.reason)
    assert stopped.metrics["finetune_steps"] == 0.0
    assert stopped.metrics["latency_pixel4"] is not None and stopped.metrics["accuracy"] is not None
    assert stopped.violations[0] > 0  # the sampler is told by how much

    small = CompressionPlan.from_mapping(
        {"fc1": [Step.of("low_rank", rank_fraction=0.1), Step.of("quantize", precision="int8_per_tensor")]}
    )
    kept = evaluate_plan(context, small)
    assert trained == [1] and kept.reason is None and kept.metrics["finetune_steps"] == 5.0

    monkeypatch.setattr(context, "config", context.config.model_copy(update={"cost_first": False}))
    evaluate_plan(context, CompressionPlan())  # cost_first off: trained, then found infeasible
    assert trained == [1, 1]

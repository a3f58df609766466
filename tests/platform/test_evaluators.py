"""The `evaluation` seam's contract (issue 37), run over every evaluator: a plan from the mode's
space becomes metrics of the shipped artifact, a utility and feasibility; a plan it cannot
score is a failed result with one line, never an exception; only `finetune` trains. Real
farm (emulated devices), real onnxruntime, a real (briefly) ensemble-trained supernet."""

from __future__ import annotations

import typing
from dataclasses import replace
from typing import Any

import optuna
import pytest
import torch

from adacomp.device_farm import Farm, FarmConfig, MeasureSettings
from adacomp.device_farm.config import EmulatedSpec
from adacomp.errors import AdacompError
from adacomp.platform.evaluate.evaluators import EVALUATORS, PlanEvaluator, make_evaluator
from adacomp.platform.evaluate.evaluators.supernet import SupernetEvaluator, extract_ready, supernet_options
from adacomp.platform.evaluate.trial import TrialContext, baseline_metrics
from adacomp.platform.search.space import restricted_space
from adacomp.platform.search_config import SUPERNET_TECHNIQUES, SearchConfig
from adacomp.platform.strategies.plan_space import plan_from_params, suggest
from adacomp.search_spaces import CompressionPlan, SearchSpace, Step, build_space, compress
from adacomp.search_spaces.supernet import EnsembleBudget, Supernet, train_supernet
from adacomp.search_spaces.supernet import plans as supernet_plans
from adacomp.search_spaces.supernet.plan_space import supernet_plan_space
from adacomp.tasks import TrainBudget, evaluate, load_task, pretrained_model

MODES = ["finetune", "supernet"]


def _config(evaluation: str) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": "t",
            "task": "digits",
            "targets": ["pixel4"],
            "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
            "constraints": [{"metric": "storage", "max": 200_000}],
            "utility": {"accuracy": 1.0, "latency": 0.5, "storage": 0.5},
            "fidelity": {"rungs": 1},
            "evaluation": evaluation,
            "supernet": {"bn_batches": 2},
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One task, model and briefly trained supernet shared by both modes' contexts."""
    task = replace(
        load_task("digits"), train_budget=TrainBudget(steps=60), finetune_budget=TrainBudget(steps=5)
    )
    model = pretrained_model(task, cache_dir=tmp_path_factory.mktemp("cache"))
    supernet = Supernet.build(model, task.example_input(2), supernet_options(_config("supernet")))
    train_supernet(supernet, task.data.train, EnsembleBudget(steps=4, batch_size=32))
    weights = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
    farm = Farm(
        FarmConfig(
            devices=(EmulatedSpec(name="pixel4", kind="emulated", profile="pixel4", device_class="pixel4"),)
        )
    )
    return {"task": task, "model": model, "weights": weights, "farm": farm}


def _evaluator(trained: dict[str, Any], evaluation: str) -> PlanEvaluator:
    ctx = TrialContext(
        config=_config(evaluation),
        task=trained["task"],
        model=trained["model"],
        farm=trained["farm"],
        settings=MeasureSettings(warmup_runs=1, min_runs=3, max_runs=10, max_cv=10),
        calibration=trained["task"].calibration_batches(2, 16),
    )
    ctx.baseline = baseline_metrics(ctx)
    return make_evaluator(ctx, trained["weights"] if evaluation == "supernet" else None)


def _space(evaluator: PlanEvaluator) -> SearchSpace:
    ctx = evaluator.ctx
    example = ctx.task.example_input(2)
    if ctx.config.evaluation == "supernet":
        supernet = evaluator.supernet
        return supernet_plan_space(supernet, ctx.model, example)
    return restricted_space(build_space(ctx.model, example), ctx.config)


def _drawn(space: SearchSpace, seed: int) -> CompressionPlan:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    suggest(trial, space)
    return plan_from_params(trial.params, space)


def test_every_evaluation_of_the_config_has_an_evaluator() -> None:
    field = SearchConfig.model_fields["evaluation"].annotation
    assert set(typing.get_args(field)) == set(EVALUATORS) == set(MODES)
    assert SUPERNET_TECHNIQUES == supernet_plans.SUPERNET_TECHNIQUES


@pytest.mark.parametrize("evaluation", MODES)
def test_a_plan_of_its_space_becomes_metrics_of_the_shipped_artifact(
    trained: dict[str, Any], evaluation: str
) -> None:
    evaluator = _evaluator(trained, evaluation)
    assert evaluator.name == evaluation
    plan = _drawn(_space(evaluator), seed=2)
    result = evaluator.evaluate(plan, seed=0)
    assert not result.failed, result.reason
    assert result.plan == plan and result.onnx_model
    m = result.metrics
    for key in ("accuracy", "accuracy_drop", "storage", "latency_pixel4", "finetune_steps"):
        assert m[key] is not None, key
    assert 0.0 <= m["accuracy"] <= 1.0  # type: ignore[operator]
    assert result.utility is not None and len(result.violations) == 1
    again = evaluator.evaluate(plan, seed=0)
    assert again.metrics["accuracy"] == m["accuracy"] and again.metrics["storage"] == m["storage"]


@pytest.mark.parametrize("evaluation", MODES)
def test_a_plan_it_cannot_score_is_a_failed_result_with_one_line(
    trained: dict[str, Any], evaluation: str
) -> None:
    evaluator = _evaluator(trained, evaluation)
    for plan in (
        CompressionPlan.from_mapping({"nope": [Step.of("channel_prune", ratio=0.5)]}),
        CompressionPlan.from_mapping({"features.conv2": [Step.of("fire", squeeze_ratio=0.25)]}),
    ):
        result = evaluator.evaluate(plan)
        if evaluation == "finetune" and not result.failed:
            continue  # fire on conv2 builds and fine-tunes: only the supernet lacks it
        assert result.failed and result.reason and "\n" not in result.reason, result
        assert not result.feasible and result.utility is None


@pytest.mark.parametrize("evaluation", MODES)
def test_only_the_finetune_evaluator_runs_optimizer_steps(
    trained: dict[str, Any], evaluation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supernet-mode plan is extracted, re-normalised, exported, scored and measured: not one
    optimizer step (the fine-tune evaluator's count shows the check can fail)."""
    evaluator = _evaluator(trained, evaluation)
    plans = [_drawn(_space(evaluator), seed) for seed in range(3)]
    steps: list[str] = []

    def counting(cls: type[torch.optim.Optimizer]) -> Any:
        original = cls.step

        def counted(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            steps.append(cls.__name__)
            return original(self, *args, **kwargs)

        return counted

    for cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):  # every optimizer adacomp uses
        monkeypatch.setattr(cls, "step", counting(cls))
    results = [evaluator.evaluate(plan) for plan in plans]
    assert all(not r.failed for r in results), [r.reason for r in results]
    if evaluation == "supernet":
        assert not evaluator.trains and steps == []
        assert all(r.metrics["finetune_steps"] == 0.0 for r in results)
    else:
        assert evaluator.trains and len(steps) >= 5


def test_the_supernet_evaluator_needs_the_trained_weights(trained: dict[str, Any]) -> None:
    with pytest.raises(AdacompError, match="needs the trained supernet's weights"):
        _evaluator({**trained, "weights": None}, "supernet")


def test_a_polish_starts_from_the_supernets_weights(trained: dict[str, Any]) -> None:
    """The compressed architecture of a supernet-mode plan takes the supernet's extraction as is:
    same accuracy as the plan's own evaluation, before any fine-tune step."""
    evaluator = _evaluator(trained, "supernet")
    assert isinstance(evaluator, SupernetEvaluator)
    ctx = evaluator.ctx
    plan = next(
        p for p in (_drawn(_space(evaluator), seed) for seed in range(20)) if evaluator.starting_weights(p)
    )
    compressed = compress(ctx.model, plan, ctx.task.example_input(2))
    compressed.load_state_dict(evaluator.starting_weights(plan))  # strict: every key and shape
    extracted = extract_ready(evaluator.supernet, evaluator.configuration(plan), evaluator.batches)
    assert evaluate(compressed, ctx.task.data.test) == evaluate(extracted, ctx.task.data.test)
    largest = CompressionPlan()
    assert evaluator.starting_weights(largest) is None  # the user's own model: compress's weights

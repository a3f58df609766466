"""One trial: plan -> compress -> fine-tune -> export -> accuracy of the artifact -> farm -> metrics.

Free of Ray and MLflow so that every strategy (Tune + Optuna, random, the RL agent) and every
test runs the same code. A trial that fails (a plan that does not build, a diverging loss, a
device error) returns a failed result with its reason instead of raising: the search goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from torch import nn

from adacomp.device_farm import Measurement, MeasureSettings, OnnxModel
from adacomp.errors import AdacompError, first_line
from adacomp.platform.evaluate.objectives import constraint_violations, utility
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, compress, export_onnx, model_facts
from adacomp.tasks import Task, TrainBudget, evaluate, evaluate_onnx, train


class MeasuresModels(Protocol):
    def measure(
        self, model: OnnxModel, device: str, settings: MeasureSettings | None = None
    ) -> Measurement: ...


@dataclass(frozen=True)
class TrialResult:
    plan: CompressionPlan
    metrics: Mapping[str, float | None]
    utility: float | None
    violations: tuple[float, ...]
    failed: bool = False
    reason: str | None = None
    seconds: float = 0.0
    onnx_model: bytes | None = field(default=None, repr=False)

    @property
    def feasible(self) -> bool:
        return not self.failed and all(v <= 0 for v in self.violations)


@dataclass
class TrialContext:
    config: SearchConfig
    task: Task
    model: nn.Module  # the trained, uncompressed model
    farm: MeasuresModels
    settings: MeasureSettings
    calibration: list[np.ndarray]
    baseline: Mapping[str, float | None] = field(default_factory=dict)

    def finetune_budget(self) -> TrainBudget | None:
        spec = self.config.finetune
        base = self.task.finetune_budget
        if spec.steps is not None:
            return replace(base, steps=spec.steps)
        if spec.epochs is not None:
            return replace(base, epochs=spec.epochs, steps=None)
        return base


def measure_metrics(
    ctx: TrialContext, model: nn.Module, plan: CompressionPlan, onnx_model: bytes
) -> dict[str, float | None]:
    example = ctx.task.example_input(2)
    facts = model_facts(model, example, plan)
    metrics: dict[str, float | None] = {
        "accuracy": evaluate_onnx(onnx_model, ctx.task.data.test),
        "accuracy_torch": evaluate(model, ctx.task.data.test),
        "storage": float(facts.storage_bytes),
        "parameters": float(facts.parameters),
        "macs": float(facts.macs),
        "onnx_bytes": float(len(onnx_model)),
    }
    artifact = OnnxModel(onnx_model, f"{plan.hash}.onnx")
    for target in ctx.config.targets:
        m = ctx.farm.measure(artifact, target, ctx.settings)
        metrics[f"latency_{target}"] = m.latency.median_ms
        metrics[f"energy_{target}"] = m.energy_mj
        metrics[f"memory_{target}"] = m.peak_memory_mb
    return metrics


def baseline_metrics(ctx: TrialContext) -> dict[str, float | None]:
    """The uncompressed model measured exactly like a trial (the utility's normaliser)."""
    plan = CompressionPlan()
    onnx_model = export_onnx(ctx.model, ctx.task.example_input(2))
    metrics = measure_metrics(ctx, ctx.model, plan, onnx_model)
    metrics["accuracy_drop"] = 0.0
    return metrics


def evaluate_plan(ctx: TrialContext, plan: CompressionPlan, *, seed: int = 0) -> TrialResult:
    started = time.perf_counter()
    try:
        example = ctx.task.example_input(2)
        compressed = compress(ctx.model, plan, example)
        budget = ctx.finetune_budget()
        if budget is not None:
            teacher = ctx.model if ctx.config.finetune.distill else None
            train(
                compressed, ctx.task.data.train, budget, seed=seed, teacher=teacher, augment=ctx.task.augment
            )
        onnx_model = export_onnx(compressed, example, plan=plan, calibration=ctx.calibration)
        metrics = measure_metrics(ctx, compressed, plan, onnx_model)
    except Exception as exc:  # the trial boundary: record why, keep searching
        reason = first_line(exc)
        if not isinstance(exc, AdacompError):
            reason = f"{type(exc).__name__}: {reason} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
        return TrialResult(
            plan, {}, None, (), failed=True, reason=reason, seconds=time.perf_counter() - started
        )
    base_accuracy = ctx.baseline.get("accuracy")
    accuracy = metrics["accuracy"]
    if base_accuracy is not None and accuracy is not None:
        metrics["accuracy_drop"] = 100.0 * (base_accuracy - accuracy)
    return TrialResult(
        plan=plan,
        metrics=metrics,
        utility=utility(ctx.config, metrics, ctx.baseline),
        violations=tuple(constraint_violations(ctx.config, metrics)),
        seconds=time.perf_counter() - started,
        onnx_model=onnx_model,
    )

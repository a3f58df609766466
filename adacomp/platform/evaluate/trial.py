"""One trial: plan -> compress -> (cost first) farm -> fine-tune -> export -> accuracy of the artifact.

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
from adacomp.platform.search_config import PER_DEVICE, Constraint, SearchConfig
from adacomp.search_spaces import CompressionPlan, compress, export_onnx, model_facts
from adacomp.tasks import Task, TrainBudget, evaluate, evaluate_onnx, train

COST_METRICS = frozenset({*PER_DEVICE, "storage"})  # what a model costs: fine-tuning changes none of it
COST_INFEASIBLE = "cost-infeasible, never fine-tuned: "  # how a record says it was stopped before training


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


def model_costs(
    ctx: TrialContext, model: nn.Module, plan: CompressionPlan, onnx_model: bytes
) -> dict[str, float | None]:
    """What the model itself costs: encoded storage, parameters, MACs, the artifact's size."""
    facts = model_facts(model, ctx.task.example_input(2), plan)
    return {
        "storage": float(facts.storage_bytes),
        "parameters": float(facts.parameters),
        "macs": float(facts.macs),
        "onnx_bytes": float(len(onnx_model)),
    }


def measure_devices(ctx: TrialContext, plan: CompressionPlan, onnx_model: bytes) -> dict[str, float | None]:
    artifact = OnnxModel(onnx_model, f"{plan.hash}.onnx")
    metrics: dict[str, float | None] = {}
    for target in ctx.config.targets:
        m = ctx.farm.measure(artifact, target, ctx.settings)
        metrics[f"latency_{target}"] = m.latency.median_ms
        metrics[f"energy_{target}"] = m.energy_mj
        metrics[f"memory_{target}"] = m.peak_memory_mb
    return metrics


def measure_metrics(
    ctx: TrialContext,
    model: nn.Module,
    plan: CompressionPlan,
    onnx_model: bytes,
    device_costs: Mapping[str, float | None] | None = None,
) -> dict[str, float | None]:
    """Accuracy of the shipped artifact (and of the torch model) plus its costs; `device_costs`
    already measured on the same graph (cost-first, before fine-tuning) are reused, not
    measured again: fine-tuning changes weights, never the graph a device runs."""
    metrics: dict[str, float | None] = {
        "accuracy": evaluate_onnx(onnx_model, ctx.task.data.test),
        "accuracy_torch": evaluate(model, ctx.task.data.test),
        **model_costs(ctx, model, plan, onnx_model),
    }
    metrics.update(device_costs if device_costs is not None else measure_devices(ctx, plan, onnx_model))
    return metrics


def baseline_metrics(ctx: TrialContext) -> dict[str, float | None]:
    """The uncompressed model measured exactly like a trial (the utility's normaliser)."""
    plan = CompressionPlan()
    onnx_model = export_onnx(ctx.model, ctx.task.example_input(2))
    metrics = measure_metrics(ctx, ctx.model, plan, onnx_model)
    metrics["accuracy_drop"] = 0.0
    return metrics


def cost_constraints(config: SearchConfig) -> list[Constraint]:
    """The constraints fine-tuning cannot change: on latency, energy, memory and storage."""
    return [c for c in config.constraints if c.metric in COST_METRICS]


def broken_cost_constraints(config: SearchConfig, costs: Mapping[str, float | None]) -> str | None:
    """Why a plan cannot be feasible whatever its fine-tuning, or None when it still can."""
    broken = [c for c in cost_constraints(config) if c.violation(costs.get(c.key)) > 0]
    if not broken:
        return None

    def value(key: str) -> str:
        found = costs.get(key)
        return "unmeasured" if found is None else f"{found:.6g}"

    return COST_INFEASIBLE + "; ".join(f"{c.key} is {value(c.key)}, limit {c.describe()}" for c in broken)


def evaluate_plan(ctx: TrialContext, plan: CompressionPlan, *, seed: int = 0) -> TrialResult:
    """Compress, (cost first) measure, fine-tune, export, measure: one plan's metrics.

    With `cost_first` and constraints on costs, the compressed model is exported and measured
    before any training: a plan that breaks a cost constraint is infeasible whatever its
    fine-tuning, so it is recorded (with its costs, its accuracy before fine-tuning and why)
    and never trained. Its constraint values still reach the sampler, which learns from it."""
    started = time.perf_counter()
    try:
        example = ctx.task.example_input(2)
        compressed = compress(ctx.model, plan, example)
        budget = ctx.finetune_budget()
        device_costs = None
        if budget is not None and ctx.config.cost_first and cost_constraints(ctx.config):
            draft = export_onnx(compressed, example, plan=plan, calibration=ctx.calibration)
            device_costs = measure_devices(ctx, plan, draft)
            costs = {**model_costs(ctx, compressed, plan, draft), **device_costs}
            reason = broken_cost_constraints(ctx.config, costs)
            if reason is not None:
                metrics = {
                    **costs,
                    "accuracy": evaluate_onnx(draft, ctx.task.data.test),
                    "finetune_steps": 0.0,
                }
                return _finished(ctx, plan, metrics, draft, started, reason)
        steps = 0
        if budget is not None:
            teacher = ctx.model if ctx.config.finetune.distill else None
            report = train(
                compressed, ctx.task.data.train, budget, seed=seed, teacher=teacher, augment=ctx.task.augment
            )
            steps = report.steps
        onnx_model = export_onnx(compressed, example, plan=plan, calibration=ctx.calibration)
        metrics = measure_metrics(ctx, compressed, plan, onnx_model, device_costs)
        metrics["finetune_steps"] = float(steps)
    except Exception as exc:  # the trial boundary: record why, keep searching
        reason = first_line(exc)
        if not isinstance(exc, AdacompError):
            reason = f"{type(exc).__name__}: {reason} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
        return TrialResult(
            plan, {}, None, (), failed=True, reason=reason, seconds=time.perf_counter() - started
        )
    return _finished(ctx, plan, metrics, onnx_model, started)


def _finished(
    ctx: TrialContext,
    plan: CompressionPlan,
    metrics: dict[str, float | None],
    onnx_model: bytes,
    started: float,
    reason: str | None = None,
) -> TrialResult:
    base_accuracy = ctx.baseline.get("accuracy")
    accuracy = metrics["accuracy"]
    if base_accuracy is not None and accuracy is not None:
        metrics["accuracy_drop"] = 100.0 * (base_accuracy - accuracy)
    return TrialResult(
        plan=plan,
        metrics=metrics,
        utility=utility(ctx.config, metrics, ctx.baseline),
        violations=tuple(constraint_violations(ctx.config, metrics)),
        reason=reason,
        seconds=time.perf_counter() - started,
        onnx_model=onnx_model,
    )

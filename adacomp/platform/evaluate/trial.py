"""One trial: plan -> compress -> (cost first) farm -> fine-tune -> export -> accuracy of the artifact.

Free of Ray and MLflow so that every strategy (Tune + Optuna, random, the RL agent) and every
test runs the same code. A trial that fails (a plan that does not build, a diverging loss, a
device error) returns a failed result with its reason instead of raising: the search goes on.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch
from torch import nn

from adacomp.device_farm import Measurement, MeasureSettings, OnnxModel
from adacomp.errors import AdacompError, first_line
from adacomp.platform.evaluate.objectives import (
    constraint_scales,
    constraint_violations,
    minimised_objectives,
    penalised_utility,
    relative_violation,
    utility,
)
from adacomp.platform.evaluate.outcome import Outcome
from adacomp.platform.evaluate.rungs import RungResult, rung_steps, stop_reason
from adacomp.platform.search_config import PER_DEVICE, Constraint, Resources, SearchConfig
from adacomp.search_spaces import CompressionPlan, compress, export_onnx, model_facts
from adacomp.tasks import Task, TrainBudget, evaluate, evaluate_onnx, train
from adacomp.tasks._base import dataset_len
from adacomp.tasks.accelerator import CPU, Accelerator, choose_accelerator

COST_METRICS = frozenset({*PER_DEVICE, "storage"})  # what a model costs: fine-tuning changes none of it
COST_INFEASIBLE = "cost-infeasible, never fine-tuned: "  # how a record says it was stopped before training


class MeasuresModels(Protocol):
    def measure(
        self, model: OnnxModel, device: str, settings: MeasureSettings | None = None
    ) -> Measurement: ...

    def identity(self, device: str) -> str: ...


@dataclass(frozen=True)
class TrialResult(Outcome[float | None]):
    """A plan's outcome as the worker that scored it has it (with the ONNX file it shipped)."""

    plan: CompressionPlan
    onnx_model: bytes | None = field(default=None, repr=False)
    rungs: tuple[RungResult, ...] = ()  # the stages of a multi-fidelity fine-tune, in order
    stopped_at: int | None = None  # the rung after which it was stopped early (never on a front)

    @property
    def feasible(self) -> bool:
        return super().feasible and self.stopped_at is None


# Called after every fine-tune stage but the last with the plan as it stands (an early-stopped
# result, were it to stop there) and the model being fine-tuned. Under Tune it reports and may
# never return: the scheduler stops the trial there.
RungHook = Callable[[TrialResult, nn.Module], None]


@dataclass(frozen=True)
class RungResume:
    """A plan's fine-tune cut short by a kill: its weights and stages so far (never redone)."""

    state: Mapping[str, torch.Tensor]
    history: tuple[RungResult, ...]

    @property
    def steps(self) -> int:
        return self.history[-1].steps if self.history else 0


@dataclass
class TrialContext:
    config: SearchConfig
    task: Task
    model: nn.Module  # the trained, uncompressed model
    farm: MeasuresModels
    settings: MeasureSettings
    calibration: list[np.ndarray]
    baseline: Mapping[str, float | None] = field(default_factory=dict)
    # Where fine-tunes run (trial_accelerator); the model above stays on the CPU whatever it is.
    accelerator: Accelerator = CPU

    def finetune_budget(self) -> TrainBudget | None:
        spec = self.config.finetune
        base = self.task.finetune_budget
        if spec.steps is not None:
            return replace(base, steps=spec.steps)
        if spec.epochs is not None:
            return replace(base, epochs=spec.epochs, steps=None)
        return base


def trial_accelerator(resources: Resources, gpu_ids: Sequence[object] | None = None) -> Accelerator:
    """The accelerator `resources` asks for, given the GPUs this process was assigned (Ray's
    ids in a worker; None outside Ray: the machine's first GPU, when there is one)."""
    return choose_accelerator(
        resources.gpu,
        resources.mixed_precision,
        gpu_ids=gpu_ids,
        pin_memory=resources.pin_memory,
        loader_workers=resources.loader_workers,
    )


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
    torch_accuracy: bool = True,
) -> dict[str, float | None]:
    """Accuracy of the shipped artifact (and of the torch model) plus its costs; `device_costs`
    already measured on the same graph (cost-first, before fine-tuning) are reused, not
    measured again: fine-tuning changes weights, never the graph a device runs. The torch
    model's accuracy (`torch_accuracy`) tells what export and quantization cost a fine-tuned
    model; a supernet-mode plan leaves it out (15 % of its evaluation on MobileNetV2)."""
    metrics: dict[str, float | None] = {
        "accuracy": evaluate_onnx(onnx_model, ctx.task.data.test),
        **({"accuracy_torch": evaluate(model, ctx.task.data.test)} if torch_accuracy else {}),
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


def evaluate_plan(
    ctx: TrialContext,
    plan: CompressionPlan,
    *,
    seed: int = 0,
    on_rung: RungHook | None = None,
    resume: RungResume | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> TrialResult:
    """Compress, (cost first) measure, fine-tune in stages, export, measure: one plan's metrics.

    With `cost_first` and constraints on costs, the compressed model is exported and measured
    before any training: a plan that breaks a cost constraint is infeasible whatever its
    fine-tuning, so it is recorded (with its costs, its accuracy before fine-tuning and why)
    and never trained. Its constraint values still reach the sampler, which learns from it.
    With several rungs (`fidelity`), costs are measured first too (the score between stages
    needs them) and `on_rung` hears after each stage; `resume` continues a plan's fine-tune
    from its last finished stage. `initial` are weights for the compressed architecture to
    start from instead of compress's own (the supernet's, for a polish in supernet mode)."""
    started = time.perf_counter()
    try:
        example = ctx.task.example_input(2)
        compressed = compress(ctx.model, plan, example)
        if initial is not None:
            compressed.load_state_dict(dict(initial))
        budget = ctx.finetune_budget()
        stages = (
            ()
            if budget is None
            else rung_steps(budget.num_steps(dataset_len(ctx.task.data.train)), ctx.config.fidelity)
        )
        device_costs: dict[str, float | None] | None = None
        costs: dict[str, float | None] = {}
        if budget is not None and (
            len(stages) > 1 or (ctx.config.cost_first and cost_constraints(ctx.config))
        ):
            draft = export_onnx(compressed, example, plan=plan, calibration=ctx.calibration)
            device_costs = measure_devices(ctx, plan, draft)
            costs = {**model_costs(ctx, compressed, plan, draft), **device_costs}
            reason = broken_cost_constraints(ctx.config, costs) if ctx.config.cost_first else None
            if reason is not None:
                metrics = {
                    **costs,
                    "accuracy": evaluate_onnx(draft, ctx.task.data.test),
                    "finetune_steps": 0.0,
                }
                return finished_result(ctx, plan, metrics, draft, started, reason)
        history: tuple[RungResult, ...] = ()
        steps = 0
        if budget is not None:
            staged = _Stages(ctx, plan, budget, stages, seed, costs, started, on_rung)
            steps, history = staged.finetune(compressed, resume)
        onnx_model = export_onnx(compressed, example, plan=plan, calibration=ctx.calibration)
        metrics = measure_metrics(ctx, compressed, plan, onnx_model, device_costs)
        metrics["finetune_steps"] = float(steps)
    except Exception as exc:  # the trial boundary: record why, keep searching
        return failed_result(plan, exc, started)
    return replace(finished_result(ctx, plan, metrics, onnx_model, started), rungs=history)


@dataclass
class _Stages:
    """One plan's fine-tune, stage by stage, scored and heard between stages."""

    ctx: TrialContext
    plan: CompressionPlan
    budget: TrainBudget
    ends: tuple[int, ...]
    seed: int
    costs: Mapping[str, float | None]
    started: float
    on_rung: RungHook | None

    def finetune(self, model: nn.Module, resume: RungResume | None) -> tuple[int, tuple[RungResult, ...]]:
        """Fine-tunes `model` in place to the full budget; returns its steps and scored stages.
        On a GPU, `model` trains there and is back on the CPU when this returns or raises (export,
        quantization and the farm are CPU-side); the teacher is a copy, so the context's model
        (shared by every trial of this worker) never leaves the CPU."""
        ctx = self.ctx
        teacher = ctx.model if ctx.config.finetune.distill else None
        done, history = 0, list(resume.history) if resume is not None else []
        if resume is not None:
            model.load_state_dict(dict(resume.state))
            done = resume.steps
        accelerator = ctx.accelerator
        if not accelerator.cuda:
            return self._stages(model, teacher, done, history, resume is not None)
        if teacher is not None:
            teacher = copy.deepcopy(teacher).to(accelerator.device)
        try:
            return self._stages(model.to(accelerator.device), teacher, done, history, resume is not None)
        finally:
            model.cpu()

    def _stages(
        self,
        model: nn.Module,
        teacher: nn.Module | None,
        done: int,
        history: list[RungResult],
        resumed: bool,
    ) -> tuple[int, tuple[RungResult, ...]]:
        ctx = self.ctx
        # Stages only pay where someone hears them (a scheduler) or a cut-short run continues.
        ends = self.ends if self.on_rung is not None or resumed else self.ends[-1:]
        for rung, end in enumerate(ends):
            if end <= done:
                continue  # finished before a kill: never redone
            span = None if (done, end) == (0, ends[-1]) else (done, end)
            train(
                model, ctx.task.data.train, self.budget,
                seed=self.seed, teacher=teacher, augment=ctx.task.augment, span=span,
                accelerator=ctx.accelerator,
            )  # fmt: skip
            done = end
            if rung < len(ends) - 1 and self.on_rung is not None:
                stopped = self._as_stopped(model, rung, end, tuple(history))
                history = list(stopped.rungs)
                self.on_rung(stopped, model)
        return done, tuple(history)

    def _as_stopped(
        self, model: nn.Module, rung: int, steps: int, earlier: tuple[RungResult, ...]
    ) -> TrialResult:
        """The plan scored after this stage, as its record would be were it stopped here."""
        accuracy = evaluate(model, self.ctx.task.data.test)
        measured = {"accuracy": accuracy, "accuracy_torch": accuracy, "finetune_steps": float(steps)}
        found = finished_result(self.ctx, self.plan, {**self.costs, **measured}, None, self.started)
        scales = constraint_scales(self.ctx.config)
        score = penalised_utility(found.utility or 0.0, found.violations, scales)
        result = RungResult(
            rung, steps, accuracy, score, found.seconds,
            objectives=minimised_objectives(self.ctx.config, found.metrics),
            violation=relative_violation(found.violations, scales),
        )  # fmt: skip
        reason = stop_reason(result, len(self.ends), self.ctx.config.fidelity)
        return replace(found, rungs=(*earlier, result), stopped_at=rung, reason=reason)


def failed_result(plan: CompressionPlan, exc: Exception, started: float) -> TrialResult:
    """A plan that could not be evaluated, with why: the trial boundary records it and the
    search goes on (an AdacompError's own line; anything else with its type and where)."""
    reason = first_line(exc)
    if not isinstance(exc, AdacompError):
        reason = f"{type(exc).__name__}: {reason} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
    return TrialResult(
        plan,
        metrics={},
        utility=None,
        violations=(),
        failed=True,
        reason=reason,
        seconds=time.perf_counter() - started,
    )


def finished_result(
    ctx: TrialContext,
    plan: CompressionPlan,
    metrics: dict[str, float | None],
    onnx_model: bytes | None,
    started: float,
    reason: str | None = None,
) -> TrialResult:
    """A plan's result from its metrics: accuracy drop against the baseline, utility, violations."""
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

"""`evaluation: supernet`: a plan scored as the configuration a trained supernet extracts.

The plan is read as a configuration (`config_of`: one line naming the layer when the supernet
cannot express it), extracted as a static model, given its own BatchNorm statistics from fixed
training batches, exported at its precision, scored on the test split through onnxruntime and
measured on every target. No optimizer step anywhere: seconds a plan, not minutes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping

import torch
from torch import nn

from adacomp.platform.evaluate.evaluators._base import PlanEvaluator
from adacomp.platform.evaluate.trial import (
    RungHook,
    RungResume,
    TrialContext,
    TrialResult,
    failed_result,
    finished_result,
    measure_metrics,
)
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces import CompressionPlan, Step, export_onnx
from adacomp.search_spaces.sites import weight_modules
from adacomp.search_spaces.supernet import (
    SubnetConfig,
    Supernet,
    SupernetOptions,
    config_of,
    recalibrate_batchnorm,
)
from adacomp.tasks import Task


def supernet_options(config: SearchConfig) -> SupernetOptions:
    """The config's supernet section as the library's options (what is elastic)."""
    s = config.supernet
    return SupernetOptions(
        width_fractions=s.width,
        rank_fractions=s.rank,
        depth=s.depth,
        precisions=tuple(s.precisions),
        alternatives=tuple(s.alternatives),
        residual_width=s.residual_width,
    )


BN_BATCH_SIZE = 64  # images per batch of `supernet.bn_batches`


def bn_batches(task: Task, config: SearchConfig) -> list[torch.Tensor]:
    """Fixed training batches that re-estimate BatchNorm statistics of an extracted model."""
    return [torch.from_numpy(b) for b in task.calibration_batches(config.supernet.bn_batches, BN_BATCH_SIZE)]


def extract_ready(supernet: Supernet, config: SubnetConfig, batches: list[torch.Tensor]) -> nn.Module:
    """A static model of `config` with its own BatchNorm statistics: what gets evaluated and
    shipped, on the CPU (a supernet training on a GPU is checked at its checkpoints too)."""
    return recalibrate_batchnorm(supernet.extract(config).cpu(), batches)


def weighted_layers(model: nn.Module) -> list[str]:
    """The model's Conv and Linear layers: the ones a precision quantizes."""
    return [name for name, _ in weight_modules(model) if name]


def precision_plan(model: nn.Module, precision: str) -> CompressionPlan:
    """The plan that quantizes every weighted layer of a static model (empty for fp32)."""
    if precision == "fp32":
        return CompressionPlan()
    return CompressionPlan.from_mapping(
        {name: [Step.of("quantize", precision=precision)] for name in weighted_layers(model)}
    )


def evaluate_subnet(
    ctx: TrialContext, supernet: Supernet, config: SubnetConfig, batches: list[torch.Tensor]
) -> tuple[dict[str, float | None], bytes]:
    """(metrics, ONNX bytes) of one configuration: extracted, never trained.

    The largest architecture (at any precision) is the user's trained model itself, not its
    supernet copy: ensemble training moves the shared weights toward what suits the smaller
    configurations (digits: the supernet's largest 98.06 % after 600 steps, 95.83 % after 10,
    against 99.17 % for the trained model), and a bundle must never top out below the model
    it replaces. Every other configuration is extracted from the supernet.
    """
    if config.hash == supernet.space.largest(config.precision).hash:
        static = copy.deepcopy(ctx.model).eval()
    else:
        static = extract_ready(supernet, config, batches)
    plan = precision_plan(static, config.precision)
    onnx_model = export_onnx(static, ctx.task.example_input(2), plan=plan, calibration=ctx.calibration)
    metrics = measure_metrics(ctx, static, plan, onnx_model, torch_accuracy=False)
    base = ctx.baseline.get("accuracy")
    accuracy = metrics.get("accuracy")
    if base is not None and accuracy is not None:
        metrics["accuracy_drop"] = 100.0 * (base - accuracy)
    return metrics, onnx_model


def trained_supernet(
    model: nn.Module,
    example_input: torch.Tensor,
    options: SupernetOptions,
    weights: Mapping[str, torch.Tensor],
) -> Supernet:
    """The supernet of `model` with trained `weights` (built the way its training built it:
    the same importance order of channels, so the weights fall where they were learned)."""
    supernet = Supernet.build(model, example_input, options)
    supernet.load_state_dict(dict(weights))
    return supernet.eval()


class SupernetEvaluator(PlanEvaluator):
    """Plans scored by extraction from `supernet`, trained once for the whole search."""

    name = "supernet"
    trains = False

    def __init__(self, ctx: TrialContext, supernet: Supernet, batches: list[torch.Tensor]) -> None:
        super().__init__(ctx)
        self.supernet = supernet
        self.batches = batches
        self.weighted = weighted_layers(ctx.model)

    def configuration(self, plan: CompressionPlan) -> SubnetConfig:
        """The configuration `plan` selects; AdacompError (one line) when it cannot be expressed."""
        return config_of(self.supernet, plan, self.weighted)

    def starting_weights(self, plan: CompressionPlan) -> dict[str, torch.Tensor] | None:
        """The weights `plan`'s compressed architecture starts a fine-tune from (a polish): the
        supernet's extraction with its own BatchNorm statistics; None for the largest
        configuration, which is the user's trained model itself (compress's own weights)."""
        config = self.configuration(plan)
        if config.hash == self.supernet.space.largest(config.precision).hash:
            return None
        with torch.no_grad():
            return {
                k: v.detach().clone()
                for k, v in extract_ready(self.supernet, config, self.batches).state_dict().items()
            }

    def evaluate(
        self,
        plan: CompressionPlan,
        *,
        seed: int = 0,
        on_rung: RungHook | None = None,
        resume: RungResume | None = None,
    ) -> TrialResult:
        started = time.perf_counter()
        try:
            config = self.configuration(plan)
            with torch.no_grad():
                metrics, onnx_model = evaluate_subnet(self.ctx, self.supernet, config, self.batches)
        except Exception as exc:  # the trial boundary: record why, keep searching
            return failed_result(plan, exc, started)
        metrics["finetune_steps"] = 0.0
        return finished_result(self.ctx, plan, metrics, onnx_model, started)

"""The search's `evaluation` seam: how a proposed plan becomes a trial's result (see _base.py)."""

from collections.abc import Mapping

import torch

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.evaluators._base import PlanEvaluator
from adacomp.platform.evaluate.evaluators.finetune import FinetuneEvaluator
from adacomp.platform.evaluate.evaluators.supernet import (
    SupernetEvaluator,
    bn_batches,
    supernet_options,
    trained_supernet,
)
from adacomp.platform.evaluate.trial import TrialContext

EVALUATORS: dict[str, type[PlanEvaluator]] = {
    FinetuneEvaluator.name: FinetuneEvaluator,
    SupernetEvaluator.name: SupernetEvaluator,
}

__all__ = ["EVALUATORS", "FinetuneEvaluator", "PlanEvaluator", "SupernetEvaluator", "make_evaluator"]


def make_evaluator(
    ctx: TrialContext, supernet_weights: Mapping[str, torch.Tensor] | None = None
) -> PlanEvaluator:
    """The evaluator of `ctx.config.evaluation`; `supernet_weights` are the trained supernet's
    (required by `supernet`: the search trains it before any trial)."""
    config = ctx.config
    if config.evaluation == SupernetEvaluator.name:
        if supernet_weights is None:
            raise AdacompError("evaluation: supernet needs the trained supernet's weights; none were given")
        example = ctx.task.example_input(2)
        supernet = trained_supernet(ctx.model, example, supernet_options(config), supernet_weights)
        return SupernetEvaluator(ctx, supernet, bn_batches(ctx.task, config))
    return FinetuneEvaluator(ctx)

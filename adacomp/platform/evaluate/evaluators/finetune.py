"""`evaluation: finetune`: compress, (cost first) measure, fine-tune in stages, export, measure."""

from __future__ import annotations

from adacomp.platform.evaluate.evaluators._base import PlanEvaluator
from adacomp.platform.evaluate.trial import RungHook, RungResume, TrialResult, evaluate_plan
from adacomp.search_spaces import CompressionPlan


class FinetuneEvaluator(PlanEvaluator):
    """Today's trial (evaluate/trial.py): each plan is fine-tuned from the compressed weights."""

    name = "finetune"
    trains = True

    def evaluate(
        self,
        plan: CompressionPlan,
        *,
        seed: int = 0,
        on_rung: RungHook | None = None,
        resume: RungResume | None = None,
    ) -> TrialResult:
        return evaluate_plan(self.ctx, plan, seed=seed, on_rung=on_rung, resume=resume)

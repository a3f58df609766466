"""What every way of scoring a plan is: one base class, the search's `evaluation` seam.

A search proposes compression plans; an evaluator turns one into a `TrialResult` (metrics of
the shipped artifact, utility, constraint violations, or a failure with its reason). The
strategies, the Tune trainable, the ledger and MLflow see only that result, so NSGA-II, TPE,
random and the RL agent run unchanged over every evaluator:

- `finetune`: compress the trained model and fine-tune it (multi-fidelity stages and their
  resume included); each plan pays for its own recovery;
- `supernet`: extract the plan's configuration from a supernet trained once per search, with
  its own BatchNorm statistics and no training at all.

An evaluator never raises for a plan: a plan that does not build, a diverging loss, a device
error or a plan the supernet cannot express is a failed result and the search goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from adacomp.platform.evaluate.trial import RungHook, RungResume, TrialContext, TrialResult
from adacomp.search_spaces import CompressionPlan


class PlanEvaluator(ABC):
    """One way to score a plan (the config's `evaluation`)."""

    name: ClassVar[str]
    # Whether scoring a plan runs optimizer steps (a fine-tune); the supernet's never does.
    trains: ClassVar[bool]

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def evaluate(
        self,
        plan: CompressionPlan,
        *,
        seed: int = 0,
        on_rung: RungHook | None = None,
        resume: RungResume | None = None,
    ) -> TrialResult:
        """The plan's result; `on_rung` and `resume` matter only to evaluators that train in stages."""

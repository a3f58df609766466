"""Multi-fidelity fine-tuning: the stages (rungs) of a plan's fine-tune and the rule that stops
a plan between them. Pure functions; the files and the Tune scheduler are in platform/search/.

A plan is fine-tuned in stages that end at `rung_steps(...)`, each `eta` times longer than the
one before, the last at the full budget. After every stage but the last it is scored: its
utility with the accuracy reached so far, less its relative constraint violations
(`penalised_utility`), so that a plan that cannot reach the accuracy floor scores low whatever
it saves, and a feasible one is ranked by the user's trade-off, not by accuracy alone (which
would stop exactly the most compressed plans). It goes on while its score is among the best
1/eta of the scores recorded at that stage before it (ASHA, Li et al. 2020: the same
percentile cut).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adacomp.platform.search_config import Fidelity


@dataclass(frozen=True)
class RungResult:
    """A plan after one stage of its fine-tune."""

    rung: int  # 0-based
    steps: int  # fine-tune steps done in all, this stage included
    accuracy: float  # of the torch model on the test split (what a final record's accuracy_torch is)
    score: float  # the penalised utility the stopping rule compares
    seconds: float  # the plan's time so far

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungResult:
        return cls(
            rung=int(data["rung"]),
            steps=int(data["steps"]),
            accuracy=float(data["accuracy"]),
            score=float(data["score"]),
            seconds=float(data["seconds"]),
        )


def rung_steps(total_steps: int, fidelity: Fidelity) -> tuple[int, ...]:
    """Where each stage ends: total/eta^(rungs-1), ..., total/eta, total (rounded, at least one
    step each, strictly increasing: a budget too small for every rung gets fewer)."""
    ends: list[int] = []
    for k in range(fidelity.rungs - 1, -1, -1):
        end = max(1, round(total_steps / fidelity.eta**k))
        if not ends or end > ends[-1]:
            ends.append(end)
    if ends[-1] != total_steps:
        ends[-1] = total_steps
    return tuple(ends)


def goes_on(score: float, earlier: Sequence[float], fidelity: Fidelity) -> bool:
    """ASHA's rule at one rung: on while `score` reaches the (1 - 1/eta) percentile of the scores
    recorded there before it (as Ray's ASHA cuts); everything goes on until `min_results` were."""
    if len(earlier) < fidelity.min_results:
        return True
    scores = [s for s in earlier if math.isfinite(s)]
    if not math.isfinite(score):
        return False
    if not scores:
        return True
    cutoff = float(np.percentile(scores, 100.0 * (1.0 - 1.0 / fidelity.eta)))
    return score >= cutoff


def stop_reason(result: RungResult, rungs: int, fidelity: Fidelity) -> str:
    """How the record of a plan stopped after `result` says why."""
    return (
        f"{STOPPED_EARLY}after rung {result.rung + 1} of {rungs} ({result.steps} fine-tune steps): "
        f"score {result.score:.4f} not among the best 1/{fidelity.eta} there"
    )


STOPPED_EARLY = "stopped early, "  # the prefix of an early-stopped plan's reason

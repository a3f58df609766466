"""Multi-fidelity fine-tuning: the stages (rungs) of a plan's fine-tune and the rule that stops
a plan between them. Pure functions; the files and the Tune scheduler are in platform/search/.

A plan is fine-tuned in stages that end at `rung_steps(...)`, each `eta` times longer than the
one before, the last at the full budget. After every stage but the last it is placed among
every plan recorded at that stage: by its objectives there (the accuracy reached so far, its
costs, which fine-tuning never changes) and its relative constraint violations. It goes on
while it is non-dominated there, or among the best 1/eta by non-dominated rank and crowding
(MO-ASHA, Schmucker et al. 2021; ASHA's cut, Li et al. 2020, over a partial order). Domination
is constrained (Deb): a plan meeting the constraints beats one that does not, and of two that do
not, the one less far off wins. One scalar (the utility) would stop plans that sit on the front:
in a 40-trial demo, 5 of the 6 non-dominated trials had been stopped by the scalar rule.
The scalar score (the penalised utility) is still recorded at each stage, for display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from adacomp.platform.evaluate.pareto import crowding_distances, dominates, non_dominated_ranks
from adacomp.platform.search_config import Fidelity


@dataclass(frozen=True)
class RungResult:
    """A plan after one stage of its fine-tune."""

    rung: int  # 0-based
    steps: int  # fine-tune steps done in all, this stage included
    accuracy: float  # of the torch model on the test split (what a final record's accuracy_torch is)
    score: float  # the penalised utility (display: the stopping rule compares `point`)
    seconds: float  # the plan's time so far
    objectives: tuple[float, ...] = ()  # the search's objectives there, minimisation form
    violation: float = 0.0  # relative constraint violation there (0: meets them all)

    @property
    def point(self) -> RungPoint:
        return RungPoint(self.objectives, self.violation)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objectives"] = [_json_float(v) for v in self.objectives]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungResult:
        """Also a stage recorded before multi-objective stopping (no objectives: compared with
        nothing, see `goes_on`)."""
        return cls(
            rung=int(data["rung"]),
            steps=int(data["steps"]),
            accuracy=float(data["accuracy"]),
            score=float(data["score"]),
            seconds=float(data["seconds"]),
            objectives=tuple(math.inf if v is None else float(v) for v in data.get("objectives", ())),
            violation=float(data.get("violation", 0.0)),
        )


def _json_float(value: float) -> float | None:
    """+inf (an objective not measured) as JSON's null: strict JSON readers refuse Infinity."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class RungPoint:
    """A plan at one stage as the stopping rule sees it."""

    objectives: tuple[float, ...]  # minimisation form; +inf where not measured
    violation: float  # relative constraint violation, 0 when it meets them all

    def dominates(self, other: RungPoint) -> bool:
        """Constrained domination (Deb): meeting the constraints beats not; of two that miss,
        the one less far off; of two that meet them, Pareto domination."""
        if self.violation > 0 or other.violation > 0:
            return self.violation < other.violation
        return dominates(self.objectives, other.objectives)


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


def goes_on(point: RungPoint, earlier: Sequence[RungPoint], fidelity: Fidelity) -> bool:
    """MO-ASHA's rule at one rung: among the points recorded there before it and itself, `point`
    goes on when nothing dominates it, or when it is among the best ceil(n/eta) by non-dominated
    rank, then crowding (the less crowded first, as NSGA-II selects). Everything goes on until
    `min_results` were recorded. Points of another shape (recorded by an older version, or under
    other objectives) are not compared."""
    comparable = [p for p in earlier if len(p.objectives) == len(point.objectives)]
    if len(comparable) < fidelity.min_results:
        return True
    pool = [*comparable, point]
    ranks = non_dominated_ranks(len(pool), lambda i, j: pool[i].dominates(pool[j]))
    mine = len(pool) - 1
    if ranks[mine] == 0:
        return True  # on the front at this rung: never stopped
    same_rank = [i for i in range(len(pool)) if ranks[i] == ranks[mine]]
    crowding = dict(zip(same_rank, crowding_distances([pool[i].objectives for i in same_rank]), strict=True))
    better = sum(
        1
        for i in range(len(pool))
        if ranks[i] < ranks[mine] or (ranks[i] == ranks[mine] and i != mine and crowding[i] > crowding[mine])
    )
    return better < math.ceil(len(pool) / fidelity.eta)


def stop_reason(result: RungResult, rungs: int, fidelity: Fidelity) -> str:
    """How the record of a plan stopped after `result` says why."""
    return (
        f"{STOPPED_EARLY}after rung {result.rung + 1} of {rungs} ({result.steps} fine-tune steps): "
        f"dominated there, and not among the best 1/{fidelity.eta} by non-dominated rank and crowding"
    )


STOPPED_EARLY = "stopped early, "  # the prefix of an early-stopped plan's reason

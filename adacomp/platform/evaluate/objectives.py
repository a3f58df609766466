"""Objectives, feasibility and the usage-driven utility of one trial: pure functions.

The utility is AdaDeep's (one definition, in adacomp.runtime.utility, which the device's
selector uses too): normalised accuracy, weighted, minus weighted normalised costs, each cost
normalised by the uncompressed model's value on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from adacomp.platform.search_config import SearchConfig
from adacomp.runtime.utility import adadeep_utility, normalised

Metrics = Mapping[str, float | None]


def constraint_violations(config: SearchConfig, metrics: Metrics) -> list[float]:
    """One value per constraint, <= 0 when satisfied (Optuna's constraints convention)."""
    return [c.violation(metrics.get(c.key)) for c in config.constraints]


def is_feasible(config: SearchConfig, metrics: Metrics) -> bool:
    return all(v <= 0 for v in constraint_violations(config, metrics))


def utility(config: SearchConfig, metrics: Metrics, baseline: Metrics) -> float:
    """AdaDeep's utility (adacomp.runtime.utility, shared with the device's selector), each
    device cost averaged over the targets that measure it; a term without a baseline is left out."""
    ratios: dict[str, float | None] = {
        "accuracy": _ratio(metrics.get("accuracy"), baseline.get("accuracy")),
        "storage": _ratio(metrics.get("storage"), baseline.get("storage")),
    }
    for cost in ("latency", "energy", "memory"):
        per_target = [
            r
            for t in config.targets
            if (r := _ratio(metrics.get(f"{cost}_{t}"), baseline.get(f"{cost}_{t}"))) is not None
        ]
        ratios[cost] = sum(per_target) / len(per_target) if per_target else None
    return float(adadeep_utility(config.utility, ratios))


def _ratio(value: float | None, base: float | None) -> float | None:
    ratio = None if value is None else normalised(value, base)
    return None if ratio is None else float(ratio)


def objective_values(config: SearchConfig, metrics: Metrics) -> list[float | None]:
    return [metrics.get(o.key) for o in config.objectives]


def constraint_scales(config: SearchConfig) -> tuple[float, ...]:
    """What one unit of each constraint's violation is measured against: its limit's size."""
    return tuple(
        max(1e-9, abs(c.max if c.max is not None else c.min or 0.0)) or 1.0 for c in config.constraints
    )


def relative_violation(violations: Sequence[float], scales: Sequence[float]) -> float:
    """How far a plan is off its constraints in all: each violation relative to its limit's
    size, capped at 1; 0 when it meets them all."""
    return sum(min(1.0, v / s) for v, s in zip(violations, scales, strict=False) if v > 0)


def penalised_utility(
    utility: float, violations: Sequence[float], scales: Sequence[float], penalty: float = 1.0
) -> float:
    """The utility less `penalty` per relative constraint violation, each capped at 1: one score
    that ranks feasible plans by utility and infeasible ones by how far they are off."""
    return utility - penalty * relative_violation(violations, scales)


def minimised_objectives(config: SearchConfig, metrics: Metrics) -> tuple[float, ...]:
    """The search's objectives for minimisation (a maximised one negated); one not measured, or
    not a number, is the worst value there is (+inf), so that it never wins a comparison."""
    values = []
    for objective in config.objectives:
        value = metrics.get(objective.key)
        if value is None or not math.isfinite(value):
            values.append(math.inf)
        else:
            values.append(-float(value) if objective.mode == "max" else float(value))
    return tuple(values)

"""Objectives, feasibility and the usage-driven utility of one trial: pure functions.

The utility follows AdaDeep's form: normalised accuracy, weighted, minus weighted normalised
costs, each cost normalised by the uncompressed model's value on the same device (so 1.0 means
"as expensive as the baseline" and weights compare across units).
"""

from __future__ import annotations

from collections.abc import Mapping

from adacomp.platform.search_config import SearchConfig

Metrics = Mapping[str, float | None]


def constraint_violations(config: SearchConfig, metrics: Metrics) -> list[float]:
    """One value per constraint, <= 0 when satisfied (Optuna's constraints convention)."""
    return [c.violation(metrics.get(c.key)) for c in config.constraints]


def is_feasible(config: SearchConfig, metrics: Metrics) -> bool:
    return all(v <= 0 for v in constraint_violations(config, metrics))


def utility(config: SearchConfig, metrics: Metrics, baseline: Metrics) -> float:
    """weights.accuracy * acc/acc_base - sum over costs of weight * mean over targets of cost/cost_base."""
    weights = config.utility
    accuracy, base_accuracy = metrics.get("accuracy"), baseline.get("accuracy")
    score = 0.0
    if accuracy is not None and base_accuracy:
        score += weights.accuracy * accuracy / base_accuracy
    costs = {"latency": weights.latency, "energy": weights.energy, "memory": weights.memory}
    for metric, weight in costs.items():
        if weight == 0:
            continue
        ratios = []
        for target in config.targets:
            value, base = metrics.get(f"{metric}_{target}"), baseline.get(f"{metric}_{target}")
            if value is not None and base:
                ratios.append(value / base)
        if ratios:
            score -= weight * sum(ratios) / len(ratios)
    storage, base_storage = metrics.get("storage"), baseline.get("storage")
    if weights.storage and storage is not None and base_storage:
        score -= weights.storage * storage / base_storage
    return score


def objective_values(config: SearchConfig, metrics: Metrics) -> list[float | None]:
    return [metrics.get(o.key) for o in config.objectives]

"""The Pareto front of a search and its hypervolume: pure functions over finished trials.

The front holds feasible trials only (constraints are hard) with every objective known, one per
plan (a plan proposed twice is counted once). Hypervolume is computed in baseline-normalised
units so that objectives in ms, bytes and accuracy weigh alike; the reference point is "zero
accuracy, a 100-point accuracy drop, twice the uncompressed model's cost" — a trial worse than
that on any objective adds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from adacomp.platform.evaluate.pareto import hypervolume, non_dominated
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search_config import UNITS, Objective, SearchConfig

Metrics = Mapping[str, float | None]


def objective_vector(config: SearchConfig, metrics: Metrics) -> tuple[float, ...] | None:
    values = [metrics.get(o.key) for o in config.objectives]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values if v is not None)


def candidates(config: SearchConfig, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Feasible trials with every objective known, first occurrence of each plan."""
    seen: set[str] = set()
    kept = []
    for record in records:
        if not record.feasible or record.duplicate_of is not None or record.plan.hash in seen:
            continue
        if objective_vector(config, record.metrics) is None:
            continue
        seen.add(record.plan.hash)
        kept.append(record)
    return kept


def minimised(config: SearchConfig, metrics: Metrics) -> tuple[float, ...]:
    """The objective vector with every objective to minimise (maximised ones negated)."""
    vector = objective_vector(config, metrics)
    assert vector is not None
    return tuple(-v if o.mode == "max" else v for v, o in zip(vector, config.objectives, strict=True))


def pareto_front(config: SearchConfig, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    kept = candidates(config, records)
    points = [minimised(config, r.metrics) for r in kept]
    return [kept[i] for i in non_dominated(points)]


def _normaliser(objective: Objective, baseline: Metrics) -> tuple[float, float]:
    """(scale, reference) of one objective in minimisation form, after dividing by scale."""
    base = baseline.get(objective.key)
    if objective.metric == "accuracy_drop":
        return 100.0, 1.0
    if objective.mode == "max":
        return (abs(base) if base else 1.0), 0.0
    return (abs(base) if base else 1.0), 2.0


def normalised_hypervolume(config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics) -> float:
    points, reference = [], []
    norms = [_normaliser(o, baseline) for o in config.objectives]
    reference = [ref for _, ref in norms]
    for record in candidates(config, records):
        raw = minimised(config, record.metrics)
        points.append(tuple(v / scale for v, (scale, _) in zip(raw, norms, strict=True)))
    return hypervolume(points, reference)


def hypervolume_history(
    config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics
) -> list[float]:
    """Hypervolume after each finished trial, in the order they finished."""
    ordered = sorted(records, key=lambda r: r.finished_at)
    return [normalised_hypervolume(config, ordered[: i + 1], baseline) for i in range(len(ordered))]


def best_by_utility(records: Sequence[TrialRecord]) -> TrialRecord | None:
    feasible = [r for r in records if r.feasible and r.utility is not None and r.duplicate_of is None]
    return max(feasible, key=lambda r: (r.utility, -r.number), default=None)


def column_name(objective: Objective) -> str:
    unit = UNITS[objective.metric]
    return f"{objective.key} ({unit})" if unit else objective.key


def front_rows(
    config: SearchConfig, records: Sequence[TrialRecord], baseline: Metrics
) -> list[dict[str, Any]]:
    """The front as rows (best utility first), the uncompressed baseline first of all."""
    front = sorted(pareto_front(config, records), key=lambda r: -(r.utility or -math.inf))
    keys = [o.key for o in config.objectives]
    extra = [k for k in ("accuracy", "accuracy_drop", "storage") if k not in keys]

    def row(trial: str, plan: str, metrics: Metrics, utility: float | None, plan_hash: str) -> dict[str, Any]:
        values = {column_name(o): metrics.get(o.key) for o in config.objectives}
        values.update({k: metrics.get(k) for k in extra})
        return {"trial": trial, **values, "utility": utility, "plan": plan, "plan_hash": plan_hash}

    from adacomp.platform.evaluate.objectives import utility as utility_of
    from adacomp.search_spaces import CompressionPlan

    rows = [
        row(
            "baseline",
            "uncompressed",
            baseline,
            utility_of(config, baseline, baseline),
            CompressionPlan().hash,
        )
    ]
    rows += [row(str(r.number), str(r.plan), r.metrics, r.utility, r.plan.hash) for r in front]
    return rows

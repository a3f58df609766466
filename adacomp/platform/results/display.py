"""Metrics in the units people read: pure functions every plot and label shares.

Trials report accuracy as a fraction, storage in bytes, latency in ms, energy in mJ and memory
in MiB (search_config.UNITS). People read accuracy in %, and storage in binary units like every
size adacomp prints (table.py): KiB, or MiB for a model of 10 MiB or more, one unit per plot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from adacomp.platform.evaluate.objectives import constraint_violations
from adacomp.platform.search_config import UNITS, Constraint, Objective, SearchConfig
from adacomp.platform.table import KIB

Metrics = Mapping[str, float | None]
StorageUnit = Literal["KiB", "MiB"]
MIB = KIB * KIB
LARGE_MODEL = 10 * MIB  # from this size on, storage is shown in MiB (a 5-digit KiB number reads badly)


def storage_unit(baseline: Metrics, storages: Iterable[float | None] = ()) -> StorageUnit:
    """The plot's one storage unit: MiB when the uncompressed model (without one, the largest
    trial) takes 10 MiB or more, KiB otherwise."""
    reference = baseline.get("storage")
    if reference is None:
        reference = max((s for s in storages if s is not None), default=0.0)
    return "MiB" if reference >= LARGE_MODEL else "KiB"


def display_unit(metric: str, storage: StorageUnit = "KiB") -> str:
    """The unit `display_value` returns `metric` in ("%" for accuracy, `storage` for storage)."""
    if metric == "accuracy":
        return "%"
    if metric == "storage":
        return storage
    return UNITS[metric]


def display_value(metric: str, value: float, storage: StorageUnit = "KiB") -> float:
    """A reported value of `metric` (accuracy 0-1, storage in bytes, ...) in its display unit."""
    if metric == "accuracy":
        return value * 100.0
    if metric == "storage":
        return value / (MIB if storage == "MiB" else KIB)
    return value


def number(value: float) -> str:
    """A display value as text: 4 significant digits, whole numbers with separators from 1,000."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def shown(metric: str, value: float | None, storage: StorageUnit = "KiB") -> str:
    """`value` of `metric` as text with its unit, e.g. "91.23 %", "609 KiB"; "n/a" when missing."""
    if value is None:
        return "n/a"
    return f"{number(display_value(metric, value, storage))} {display_unit(metric, storage)}".strip()


def axis_title(objective: Objective, storage: StorageUnit = "KiB") -> str:
    """E.g. "accuracy (%)", "storage (KiB)", "latency on pixel4 (ms)"."""
    where = f" on {objective.target}" if objective.target else ""
    unit = display_unit(objective.metric, storage)
    return f"{objective.metric.replace('_', ' ')}{where} ({unit})" if unit else f"{objective.metric}{where}"


def limits(constraint: Constraint, storage: StorageUnit = "KiB") -> list[tuple[float, str]]:
    """The constraint's bounds in display units, each with its label: (20.0, "latency_pixel4 ≤ 20 ms")."""
    bounds = [(constraint.max, "≤"), (constraint.min, "≥")]
    metric, key = constraint.metric, constraint.key
    return [
        (display_value(metric, bound, storage), f"{key} {sign} {shown(metric, bound, storage)}")
        for bound, sign in bounds
        if bound is not None
    ]


def violated(config: SearchConfig, metrics: Metrics, storage: StorageUnit = "KiB") -> list[str]:
    """Each constraint `metrics` break (the search's own feasibility test), said with the value
    and the limit, e.g. "latency_pixel4 12.1 ms > 10 ms"; empty when they are feasible."""
    said = []
    for constraint, excess in zip(config.constraints, constraint_violations(config, metrics), strict=True):
        if excess <= 0:
            continue
        value, metric = metrics.get(constraint.key), constraint.metric
        if value is None:
            said.append(f"{constraint.key} not measured")
            continue
        above = constraint.max is not None and value > constraint.max
        sign, bound = (">", constraint.max) if above else ("<", constraint.min)
        said.append(
            f"{constraint.key} {shown(metric, value, storage)} {sign} {shown(metric, bound, storage)}"
        )
    return said

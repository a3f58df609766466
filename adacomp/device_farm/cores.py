"""Keeping host-CPU measurements off the cores that train.

Timing a model on a core that a training trial also uses measures the trial, not the model. The
host's cores are split once: measurement cores (the host device and its worker process are
pinned there) and training cores (the Ray driver is pinned there before Ray starts, so the
raylet and every worker it spawns inherit that mask).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from adacomp.errors import AdacompError


@dataclass(frozen=True)
class CoreReservation:
    measurement: tuple[int, ...]
    training: tuple[int, ...]


def available_cores() -> tuple[int, ...]:
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def reserve_cores(available: Sequence[int], measurement_cores: int = 1) -> CoreReservation:
    """The last `measurement_cores` cores measure; the rest train. Both sides get at least one."""
    cores = sorted(set(available))
    if measurement_cores < 1:
        raise AdacompError(f"measurement_cores={measurement_cores}; expected at least 1")
    if len(cores) <= measurement_cores:
        raise AdacompError(
            f"cannot reserve {measurement_cores} core(s) for measurements: only {len(cores)} available "
            "and training needs at least one"
        )
    return CoreReservation(
        measurement=tuple(cores[-measurement_cores:]), training=tuple(cores[:-measurement_cores])
    )


def pin_process(cores: Sequence[int]) -> None:
    """Restrict this process (and the processes it starts from now on) to `cores` (Linux)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))

"""AdaDeep's usage-driven utility: one definition for the search that ranks plans and the
device's selector that ranks configurations (numpy only, so the runtime can carry it).

    utility = w_accuracy * accuracy' - sum over costs k of w_k * cost_k'

where x' is x divided by the uncompressed model's x, so 1.0 means "as good (as expensive) as
the baseline" and weights compare across units. The two callers differ only in what they hand
in, never in the formula:
- the search averages each cost's ratio over the target devices, and leaves a term out where
  the baseline has no value (nothing to normalise by);
- the selector ranks one device's configurations and, where the bundle's baseline lacks a value,
  normalises by the largest value among the configurations (`peak_fallback`): the ranking it
  needs still exists; it also keeps energy apart, to reweight it as the battery drains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
COSTS = ("latency", "energy", "memory", "storage")


class Weights(Protocol):
    """What the utility needs of its weights: the search config's and the manifest's both fit."""

    @property
    def accuracy(self) -> float: ...
    @property
    def latency(self) -> float: ...
    @property
    def energy(self) -> float: ...
    @property
    def memory(self) -> float: ...
    @property
    def storage(self) -> float: ...


def normalised(
    values: npt.ArrayLike, base: float | None, *, peak_fallback: bool = False
) -> FloatArray | None:
    """`values` as ratios to the baseline's `base`. Without a usable base (None or <= 0): None
    (the term is left out), or with `peak_fallback` ratios to the largest of `values` (1 when
    none is positive)."""
    array = np.asarray(values, dtype=np.float64)
    if base is not None and base > 0:
        return array / float(base)
    if not peak_fallback:
        return None
    peak = float(np.max(array)) if array.size else 0.0
    return array / (peak if peak > 0 else 1.0)


def adadeep_utility(weights: Weights, ratios: Mapping[str, FloatArray | float | None]) -> FloatArray:
    """The utility from baseline-normalised `ratios` ("accuracy" and any of COSTS); a term whose
    ratio is None, or whose weight is 0, is left out. Element-wise over arrays."""
    accuracy = ratios.get("accuracy")
    score = np.asarray(0.0 if accuracy is None else weights.accuracy * np.asarray(accuracy, dtype=np.float64))
    for cost in COSTS:
        weight, ratio = float(getattr(weights, cost)), ratios.get(cost)
        if weight != 0 and ratio is not None:
            score = score - weight * np.asarray(ratio, dtype=np.float64)
    return np.asarray(score, dtype=np.float64)

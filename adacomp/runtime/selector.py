"""Which configuration to run now: the best utility among those that fit the device's context.

AdaSpring's runtime step. The search already measured every configuration on every device, so
adapting to a new context (a latency budget, the battery, free memory) is a lookup, not a
retraining: mask the configurations that fit, take the argmax of the utility. Both are numpy
operations over precomputed arrays, so a selection costs microseconds even for thousands of
configurations.

The utility is the search's own (AdaDeep's form, adacomp.runtime.utility): normalised accuracy,
weighted, minus weighted costs normalised by the uncompressed baseline on this device. A
draining battery raises the weight of energy.

A context measured on a phone is noisy; switching models costs a session load. So the selector is
a Schmitt trigger: it keeps the current configuration while it still fits and is within `margin`
of the best, and when it does switch it prefers a configuration that fits with `slack` to spare,
so the next small wobble of the budget does not switch back. Constraints are never relaxed for
this: a selection that is not a fallback satisfies every constraint of the context.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from adacomp.runtime.manifest import Manifest, ManifestError
from adacomp.runtime.utility import adadeep_utility, normalised

CONTEXT_FIELDS = ("latency_budget_ms", "energy_budget_mj", "battery", "free_memory_mb", "min_accuracy")
_FRACTIONS = ("battery", "min_accuracy")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_TINY = 1e-9  # a budget of 0 still ranks violations by their size

NOTE_FALLBACK = "nothing fits the context: running the configuration that violates it least"
NOTE_NO_ENERGY_BUDGET = "energy budget ignored: the device has no energy measurements"
NOTE_NO_ENERGY_BATTERY = "battery ignored: the device has no energy measurements"
NOTE_MEMORY_ESTIMATED = "memory not measured on the device: estimated as the model's storage size"


@dataclass(frozen=True)
class Context:
    """What the device reports now; None means "no constraint" (or, for battery, "full")."""

    latency_budget_ms: float | None = None
    energy_budget_mj: float | None = None
    battery: float | None = None  # state of charge, 0 (empty) .. 1 (full)
    free_memory_mb: float | None = None
    min_accuracy: float | None = None  # 0 .. 1

    def __post_init__(self) -> None:
        for name in CONTEXT_FIELDS:
            try:
                number = context_value(name, getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            object.__setattr__(self, name, number)

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def context_value(name: str, value: object) -> float | None:
    """Check one Context field (a ValueError saying what was expected); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    if name in _FRACTIONS and number > 1:
        raise ValueError(f"expected a number in [0, 1], got {value!r}")
    return number


@dataclass(frozen=True)
class Selection:
    index: int  # position in manifest.configurations
    id: str
    score: float  # the utility under this context's battery
    fallback: bool = False  # nothing fitted: this one violates the context least
    switched: bool = False  # differs from the previous selection (False for the first one)
    notes: tuple[str, ...] = ()


class Selector:
    """Selects a configuration per context for one device of a manifest.

    Not thread-safe: it reuses scratch arrays between calls and keeps the current selection.
    `hysteresis=False` gives the plain argmax over feasible configurations (no margin, no slack,
    no state), the reference the tests compare against brute force.
    """

    def __init__(
        self,
        manifest: Manifest,
        device: str,
        *,
        margin: float = 0.02,  # utility a better configuration must gain before we switch to it
        slack: float = 0.05,  # a switch prefers configurations within 95 % of each budget
        battery_energy_weight: float = 1.0,  # extra energy weight at an empty battery (= accuracy's)
        hysteresis: bool = True,
    ) -> None:
        if device not in manifest.devices:
            raise ManifestError(
                f"unknown device {device!r}; manifest {manifest.name!r} has: {', '.join(manifest.devices)}"
            )
        for name, value in (("margin", margin), ("battery_energy_weight", battery_energy_weight)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if not 0 <= slack < 1:
            raise ValueError(f"slack: expected a number in [0, 1), got {slack!r}")
        self.manifest = manifest
        self.device = device
        self.margin = float(margin)
        self.slack = float(slack)
        self.battery_energy_weight = float(battery_energy_weight)
        self.hysteresis = hysteresis
        self.ids = manifest.ids

        configs = manifest.configurations
        costs = [c.devices[device] for c in configs]
        self.has_energy = costs[0].energy_mj is not None  # the manifest guarantees all or none
        self.memory_measured = costs[0].memory_mb is not None
        self.accuracy = _frozen([c.accuracy for c in configs])
        self.latency_ms = _frozen([k.latency_ms for k in costs])
        self.energy_mj = _frozen([math.nan if k.energy_mj is None else k.energy_mj for k in costs])
        # Without a measurement, the weights must at least fit: storage size is a lower bound.
        self.memory_mb = _frozen(
            [
                k.memory_mb if k.memory_mb is not None else c.storage_bytes / 2**20
                for c, k in zip(configs, costs, strict=True)
            ]
        )
        self.storage_bytes = _frozen([c.storage_bytes for c in configs])

        weights, baseline = manifest.utility, manifest.baseline
        base = baseline.devices[device]
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow becomes the error below
            # Energy apart: its weight follows the battery (energy_weight_for).
            utility = adadeep_utility(
                weights,
                {
                    "accuracy": _ratio(self.accuracy, baseline.accuracy),
                    "latency": _ratio(self.latency_ms, base.latency_ms),
                    "memory": _ratio(self.memory_mb, base.memory_mb),
                    "storage": _ratio(self.storage_bytes, baseline.storage_bytes),
                },
            )
            self._utility_without_energy = _frozen(utility)
            if self.has_energy:
                self._energy_ratio = _frozen(_ratio(self.energy_mj, base.energy_mj))
            else:
                self._energy_ratio = _frozen(np.zeros_like(utility))
        if not (np.isfinite(utility).all() and np.isfinite(self._energy_ratio).all()):
            raise ManifestError(
                f"manifest {manifest.name!r}, device {device!r}: the utility overflows; "
                "a baseline value is too close to 0 to normalise by"
            )
        self.energy_weight = weights.energy if self.has_energy else 0.0
        # The utility at a full battery: the usage's own weights, as in the search.
        self.utility = _frozen(utility - self.energy_weight * self._energy_ratio)

        n = len(configs)
        self._score = np.empty(n)
        self._masked = np.empty(n)
        self._mask = np.empty(n, dtype=bool)
        self._slack_mask = np.empty(n, dtype=bool)
        self._scratch = np.empty(n, dtype=bool)
        self._current: Selection | None = None

    @property
    def current(self) -> Selection | None:
        return self._current

    def reset(self) -> None:
        self._current = None

    def set_current(self, config_id: str) -> Selection:
        """Make `config_id` the current configuration (an explicit switch outside `select`)."""
        index = self.manifest.index(config_id)
        previous = self._current
        self._current = Selection(
            index,
            config_id,
            float(self.utility[index]),
            switched=previous is not None and previous.index != index,
        )
        return self._current

    def energy_weight_for(self, context: Context) -> float:
        """The usage's energy weight, raised as the battery drains (0 without energy numbers)."""
        if not self.has_energy:
            return 0.0
        if context.battery is None:
            return self.energy_weight
        return self.energy_weight + (1.0 - context.battery) * self.battery_energy_weight

    def scores(self, context: Context) -> FloatArray:
        """The utility of every configuration under this context's battery (a fresh array)."""
        return self._scores(context).copy()

    def feasible(self, context: Context) -> BoolArray:
        """Which configurations satisfy every given constraint (a fresh array)."""
        mask = np.empty(len(self.ids), dtype=bool)
        if not self._fit(context, 1.0, mask):
            mask.fill(True)
        return mask

    def violations(self, index: int, context: Context) -> tuple[str, ...]:
        """The constraints of `context` that configuration `index` violates, by name."""
        broken = []
        if context.latency_budget_ms is not None and self.latency_ms[index] > context.latency_budget_ms:
            broken.append("latency")
        if (
            self.has_energy
            and context.energy_budget_mj is not None
            and self.energy_mj[index] > context.energy_budget_mj
        ):
            broken.append("energy")
        if context.free_memory_mb is not None and self.memory_mb[index] > context.free_memory_mb:
            broken.append("memory")
        if context.min_accuracy is not None and self.accuracy[index] < context.min_accuracy:
            broken.append("accuracy")
        return tuple(broken)

    def select(self, context: Context) -> Selection:
        score = self._scores(context)
        mask = self._mask
        constrained = self._fit(context, 1.0, mask)
        best = self._argmax(score, mask if constrained else None)
        previous = self._current
        fallback = best is None
        if best is None:
            chosen = self._least_violating(context, score)
        elif not self.hysteresis:
            chosen = best
        elif previous is not None and (not constrained or mask[previous.index]):
            # The current one still fits: switch only for a clear gain, to a roomy candidate.
            chosen = current = previous.index
            if score[best] - score[current] > self.margin:
                roomy = self._roomy_best(context, score, best, constrained)
                if score[roomy] - score[current] > self.margin:
                    chosen = roomy
        else:
            chosen = self._roomy_best(context, score, best, constrained)
        selection = Selection(
            index=chosen,
            id=self.ids[chosen],
            score=float(score[chosen]),
            fallback=fallback,
            switched=previous is not None and previous.index != chosen,
            notes=self._notes(context, fallback),
        )
        self._current = selection
        return selection

    def _scores(self, context: Context) -> FloatArray:
        weight = self.energy_weight_for(context)
        if weight == 0.0:
            return self._utility_without_energy
        np.multiply(self._energy_ratio, -weight, out=self._score)
        np.add(self._score, self._utility_without_energy, out=self._score)
        return self._score

    def _fit(self, context: Context, scale: float, out: BoolArray) -> bool:
        """Write into `out` which configurations fit the budgets scaled by `scale`; False if none given."""
        constrained = False
        checks = (
            (self.latency_ms, context.latency_budget_ms, scale),
            (self.energy_mj, context.energy_budget_mj if self.has_energy else None, scale),
            (self.memory_mb, context.free_memory_mb, scale),
        )
        for values, limit, factor in checks:
            if limit is None:
                continue
            if constrained:
                np.less_equal(values, limit * factor, out=self._scratch)
                np.logical_and(out, self._scratch, out=out)
            else:
                np.less_equal(values, limit * factor, out=out)
                constrained = True
        if context.min_accuracy is not None:
            if constrained:
                np.greater_equal(self.accuracy, context.min_accuracy, out=self._scratch)
                np.logical_and(out, self._scratch, out=out)
            else:
                np.greater_equal(self.accuracy, context.min_accuracy, out=out)
                constrained = True
        return constrained

    def _argmax(self, score: FloatArray, mask: BoolArray | None) -> int | None:
        """Index of the best score where `mask` holds (everywhere if None); None if nowhere."""
        if mask is None:
            return int(score.argmax())
        masked = self._masked
        masked.fill(-np.inf)
        np.copyto(masked, score, where=mask)
        best = int(masked.argmax())
        return best if mask[best] else None

    def _roomy_best(self, context: Context, score: FloatArray, best: int, constrained: bool) -> int:
        """The best configuration fitting every budget with `slack` to spare, else `best`."""
        if not constrained or self.slack == 0.0:
            return best
        self._fit(context, 1.0 - self.slack, self._slack_mask)
        roomy = self._argmax(score, self._slack_mask)
        return best if roomy is None else roomy

    def _least_violating(self, context: Context, score: FloatArray) -> int:
        """Smallest sum of relative violations over the given constraints; ties go to the score."""
        total = np.zeros(len(self.ids))
        limits = (
            (self.latency_ms, context.latency_budget_ms),
            (self.energy_mj, context.energy_budget_mj if self.has_energy else None),
            (self.memory_mb, context.free_memory_mb),
        )
        for values, limit in limits:
            if limit is not None:
                total += np.maximum(values - limit, 0.0) / max(limit, _TINY)
        if context.min_accuracy:
            total += np.maximum(context.min_accuracy - self.accuracy, 0.0) / context.min_accuracy
        least = total.min()
        tied = total <= least + 1e-12 * max(1.0, least)
        return int(np.where(tied, score, -np.inf).argmax())

    def _notes(self, context: Context, fallback: bool) -> tuple[str, ...]:
        if not fallback and self.has_energy and self.memory_measured:
            return ()  # the common case, without building a list
        notes = []
        if fallback:
            notes.append(NOTE_FALLBACK)
        if not self.has_energy:
            if context.energy_budget_mj is not None:
                notes.append(NOTE_NO_ENERGY_BUDGET)
            if context.battery is not None:
                notes.append(NOTE_NO_ENERGY_BATTERY)
        if context.free_memory_mb is not None and not self.memory_measured:
            notes.append(NOTE_MEMORY_ESTIMATED)
        return tuple(notes)


def _frozen(values: Any) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


def _ratio(values: FloatArray, base: float | None) -> FloatArray:
    """Ratios to the baseline's value, or (baseline null or 0) to the largest configuration's."""
    ratios = normalised(values, base, peak_fallback=True)
    assert ratios is not None  # peak_fallback always gives ratios
    return ratios

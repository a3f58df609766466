"""What scoring one candidate gave: one record shared by every kind of candidate.

A search trial's result (`TrialResult`, in the worker), its ledger line (`TrialRecord`, in the
driver), a supernet configuration's line (`SubnetRecord`) and a polished model all say the same
things about a scored model: its metrics, the utility they make, each constraint's violation,
whether it failed and why, and what it cost. They differ only in what the candidate *is* (a plan,
a configuration) and what else its stage knows (rungs, an ONNX file, a number), so those fields
live here once, with the one meaning of "feasible" and one JSON form, and the records add theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Outcome"]

Value = TypeVar("Value", float, float | None)  # a metric's value: None where it was not measured


@dataclass(frozen=True, kw_only=True)
class Outcome(Generic[Value]):
    """Keyword-only, so that a record's own identifying fields (its plan, its number) stay the
    positional ones."""

    metrics: Mapping[str, Value]
    utility: float | None
    violations: tuple[float, ...]  # one per constraint, > 0 where it is broken
    failed: bool = False
    reason: str | None = None  # why it failed, or why it was stopped early
    seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return not self.failed and all(v <= 0 for v in self.violations)

    def outcome_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "utility": self.utility,
            "violations": list(self.violations),
            "failed": self.failed,
            "reason": self.reason,
            "seconds": self.seconds,
        }

    @staticmethod
    def outcome_fields(data: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments `outcome_dict` wrote, read back."""
        return {
            "metrics": dict(data["metrics"]),
            "utility": data["utility"],
            "violations": tuple(data["violations"]),
            "failed": bool(data["failed"]),
            "reason": data["reason"],
            "seconds": float(data["seconds"]),
        }

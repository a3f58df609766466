"""The search's own record of finished trials: one JSON line each, appended and fsynced.

It is what a resumed search trusts (which trials finished, with what result), what `adacomp
pareto` reads while a search runs, and what MLflow logging is reconciled against, so that a
kill between "trial finished" and "MLflow run logged" neither loses nor duplicates a trial.
A line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from adacomp.platform.evaluate.outcome import Outcome
from adacomp.platform.evaluate.rungs import RungResult
from adacomp.search_spaces import CompressionPlan

if TYPE_CHECKING:
    from adacomp.platform.evaluate.trial import TrialResult


@dataclass(frozen=True)
class TrialRecord(Outcome[float | None]):
    """A trial's outcome as the search keeps it (trials.jsonl, polished.jsonl)."""

    number: int  # the Optuna trial number: unique across resumed runs of one search
    plan: CompressionPlan
    duplicate_of: int | None = None  # ledgers before issue 20 only: a repeat of that trial, not run
    finished_at: float = field(default_factory=time.time)
    rungs: tuple[RungResult, ...] = ()  # its multi-fidelity stages, scored (all but the last)
    stopped_at: int | None = None  # stopped early after this rung: never on a front
    polished: bool = False  # numbers after the polish at the end of the search (polished.jsonl)

    @classmethod
    def from_result(cls, number: int, result: TrialResult) -> TrialRecord:
        return cls(
            number=number,
            plan=result.plan,
            metrics={k: v for k, v in result.metrics.items() if v is not None},
            utility=result.utility,
            violations=result.violations,
            failed=result.failed,
            reason=result.reason,
            seconds=result.seconds,
            rungs=result.rungs,
            stopped_at=result.stopped_at,
        )

    @property
    def feasible(self) -> bool:
        return super().feasible and self.stopped_at is None

    def report(self) -> dict[str, Any]:
        """What a trial hands Tune: flat values for the searcher, the whole record for the driver."""
        return {
            **{k: v for k, v in self.metrics.items() if v is not None},
            "utility": self.utility,
            "violations": list(self.violations),
            "failed": float(self.failed),
            "reason": self.reason or "",
            "plan_hash": self.plan.hash,
            **(
                {}
                if self.stopped_at is None
                else {
                    "rung": self.stopped_at,
                    "rung_score": self.rungs[-1].score,
                    "rung_objectives": list(self.rungs[-1].objectives),
                    "rung_violation": self.rungs[-1].violation,
                }
            ),
            "record": self.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "plan": json.loads(self.plan.to_json()),
            **self.outcome_dict(),
            "duplicate_of": self.duplicate_of,
            "finished_at": self.finished_at,
            "rungs": [r.to_dict() for r in self.rungs],
            "stopped_at": self.stopped_at,
            "polished": self.polished,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(
            number=int(data["number"]),
            plan=CompressionPlan.from_json(json.dumps(data["plan"])),
            **cls.outcome_fields(data),
            duplicate_of=data.get("duplicate_of"),
            finished_at=float(data["finished_at"]),
            rungs=tuple(RungResult.from_dict(r) for r in data.get("rungs", ())),
            stopped_at=data.get("stopped_at"),
            polished=bool(data.get("polished", False)),
        )


class Numbered(Protocol):
    """A record a ledger can keep: numbered, and round-tripping through a JSON object."""

    @property
    def number(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Numbered)


class Ledger(Generic[R]):
    """Append-only JSON lines of records (TrialRecord by default), the first of each number wins."""

    def __init__(self, path: Path, parse: Callable[[Mapping[str, Any]], R] | None = None) -> None:
        self.path = path
        self.parse: Callable[[Mapping[str, Any]], R] = parse or TrialRecord.from_dict  # type: ignore[assignment]

    def load(self) -> list[R]:
        if not self.path.exists():
            return []
        records: dict[int, R] = {}
        for line in self.path.read_text().splitlines():
            try:
                record = self.parse(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # the tail of a write cut short by a kill
            records.setdefault(record.number, record)
        return sorted(records.values(), key=lambda r: r.number)

    def append(self, record: R) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_dict(), sort_keys=True)
        with self.path.open("a") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")  # never glue a record onto a torn line
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

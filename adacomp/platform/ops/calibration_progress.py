"""Where a calibration tells its user how far it is, and keeps what it did.

A 300-model calibration runs for tens of minutes, most of it generating and measuring models
one by one. Its user sees one progress bar over every step (a model generated, a pass measured;
extra passes to settle a noisy model add steps as they are needed) with the phase and the time
left, and the few lines that matter (a model skipped, a round's worst kernels); the line per
measurement only with `--verbose`. The bar itself is drawn at the edge (the CLI, with rich);
here it is a protocol, so the calibration stays free of terminals and tests run it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from adacomp.platform.ops.calibration_journal import CalibrationJournal

Log = Callable[[str], None]


class Progress(Protocol):
    def plan(self, steps: int) -> None:
        """`steps` more steps are to come."""

    def advance(self, phase: str) -> None:
        """One step is done; `phase` says what the steps now are (e.g. "held-out pass 1/2")."""


class NoProgress:
    """No bar: tests, benchmarks and any caller that only wants the lines."""

    def plan(self, steps: int) -> None:
        return None

    def advance(self, phase: str) -> None:
        return None


def _silent(message: str) -> None:
    return None


@dataclass(frozen=True)
class Books:
    """A calibration's outputs besides its result: `say` (lines always shown), `detail` (one line
    per measurement, shown with --verbose), the progress bar, and the journal a resume reads."""

    say: Log = print
    detail: Log = _silent
    progress: Progress = field(default_factory=NoProgress)
    journal: CalibrationJournal | None = None

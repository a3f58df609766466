"""`adacomp farm calibrate`'s progress bar: steps done of planned, the phase, time left.

On a terminal, a rich progress bar redrawn in place (lines printed meanwhile scroll above it);
anywhere else (CI logs, a pipe) one plain line per tenth of the steps and per new phase, so a
log shows how far a long calibration went without a line per measurement.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class CalibrationBar:
    """A `calibration_progress.Progress` drawn on stderr; a context manager around the calibration."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self._task = self._progress.add_task("calibrating", total=0)
        self._planned = 0
        self._done = 0
        self._phase = ""
        self._printed_tenth = 0
        self._started = time.monotonic()

    def __enter__(self) -> CalibrationBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def plan(self, steps: int) -> None:
        self._planned += steps
        self._progress.update(self._task, total=self._planned)

    def advance(self, phase: str) -> None:
        self._done += 1
        self._progress.update(self._task, advance=1, description=phase)
        if self.live:
            return
        tenth = 10 * self._done // max(1, self._planned)
        if phase != self._phase or tenth > self._printed_tenth:
            self._phase, self._printed_tenth = phase, tenth
            print(self.line(), file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        """A line above the bar (or in the log)."""
        if self.live:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        left = elapsed / self._done * max(0, self._planned - self._done) if self._done else None
        eta = f", ~{_duration(left)} left" if left is not None else ""
        return f"calibrating: {self._phase}: {self._done}/{self._planned} steps, {_duration(elapsed)}{eta}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

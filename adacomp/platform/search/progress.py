"""The live view of a running search: trials done/running/failed, front size, best utility, ETA.

On a terminal it redraws one status panel in place (rich); anywhere else (CI logs, a pipe) it
prints one line per finished trial, so logs stay readable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


@dataclass
class SearchProgress:
    total: int
    done: int = 0  # finished before this run included
    failed: int = 0
    running: int = 0
    front_size: int = 0
    best_utility: float | None = None
    hypervolume: float = 0.0
    started: float = field(default_factory=time.monotonic)
    done_this_run: int = 0

    def seconds_left(self) -> float | None:
        if self.done_this_run == 0:
            return None
        per_trial = (time.monotonic() - self.started) / self.done_this_run
        return per_trial * max(0, self.total - self.done)

    def line(self) -> str:
        left = self.seconds_left()
        eta = "?" if left is None else _duration(left)
        best = "-" if self.best_utility is None else f"{self.best_utility:.4f}"
        return (
            f"trials {self.done}/{self.total} done, {self.running} running, {self.failed} failed"
            f" | front {self.front_size} | best utility {best} | hypervolume {self.hypervolume:.4f}"
            f" | elapsed {_duration(time.monotonic() - self.started)}, ~{eta} left"
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressView:
    def __init__(
        self, progress: SearchProgress, enabled: bool = True, console: Console | None = None
    ) -> None:
        self.progress = progress
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.enabled and self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def _render(self) -> Text:
        return Text(self.progress.line(), style="bold")

    def trial_finished(self, message: str) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.console.print(message, highlight=False)
            self._live.update(self._render())
        else:
            self.console.print(f"{message}  [{self.progress.line()}]", highlight=False, soft_wrap=True)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

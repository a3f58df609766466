"""A job's directory: its state file, the guard against starting over a job that exists or
resuming one with other settings, and atomic writes. Every job (search, supernet training,
supernet search) keeps its state through this one class, so the rules are the same for all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError
from adacomp.safe_load import load_json_file


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one (a kill mid-write included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass(frozen=True)
class JobDir:
    path: Path
    state_file: str
    description: str  # the job in an error message: "search 'digits'", "a supernet for 'digits'"

    @property
    def state_path(self) -> Path:
        return self.path / self.state_file

    def load(self) -> dict[str, Any]:
        """The saved state, or {} for a job that has not started."""
        if not self.state_path.exists():
            return {}
        state = load_json_file(self.state_path, f"the saved state of {self.description}")
        if not isinstance(state, dict):
            raise AdacompError(
                f"{self.state_path}: expected a JSON object (the saved state of {self.description})"
            )
        return state

    def open(
        self,
        *,
        resume: bool,
        identity: Mapping[str, Any] | None = None,
        existing: Callable[[], str] = lambda: "",
        changed: Callable[[list[str]], str] | None = None,
    ) -> dict[str, Any]:
        """The state of the job to run: {} to start, the saved state to resume.

        Refuses a job that exists when not resuming (`existing()` adds what it holds), and one
        whose saved `identity` differs from this one (`changed(fields)` says how)."""
        state = self.load()
        if state and not resume:
            raise AdacompError(
                f"output: {self.description} already exists in {self.path}{existing()}; "
                "continue it with resume=True, or change 'name' or 'output.dir'"
            )
        if state and identity is not None and state.get("identity") != identity:
            saved = state.get("identity") or {}
            fields = [k for k in identity if saved.get(k) != identity[k]] or ["identity"]
            raise AdacompError(
                changed(fields)
                if changed is not None
                else f"{fields[0]}: differs from the {self.description} in {self.path}; "
                "change 'name' to start a new one"
            )
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(state, indent=2) + "\n")

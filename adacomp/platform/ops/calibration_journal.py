"""What a calibration has done so far, kept as it is done, so that a killed one resumes.

A calibration of 300 models runs for tens of minutes; one that dies (a kill, a crash, a model
that breaks something) must not lose what it measured. Every generated model (its ONNX bytes,
once, under `<out>/<device>.models/`) and every measurement pass (its fastest-run latency and
its kernel times) is appended to `<out>/<device>.calibration.jsonl` (fsynced JSON lines, as
the search's trials.jsonl) the moment it exists. `--resume` replays the journal: a model
already generated is read back instead of generated again, a pass already measured is not
measured again, and the calibration goes on from where it stopped. Its first line records the
options that decide what is generated and measured; a resume with other options is refused, as
is a new calibration over an existing journal (that would mix two calibrations, or lose one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adacomp.atomic import write_atomically
from adacomp.errors import AdacompError
from adacomp.platform.ops.calibration_models import CalibrationModel
from adacomp.platform.results.ledger import Ledger

JOURNAL_SUFFIX = ".calibration.jsonl"


@dataclass(frozen=True)
class JournalEntry:
    """One line: `kind` "options" (the first), "model" (a generated model) or "pass" (one
    measurement of a model, or its refusal under `error`)."""

    number: int
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "kind": self.kind, **self.data}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> JournalEntry:
        number, kind = row["number"], row["kind"]
        if not isinstance(number, int) or kind not in ("options", "model", "pass"):
            raise ValueError(f"not a journal entry: {dict(row)!r}")
        return cls(number, kind, {k: v for k, v in row.items() if k not in ("number", "kind")})


@dataclass(frozen=True)
class Pass:
    """One measurement pass of one model: its fastest-run latency and, on this host, kernel times."""

    low_ms: float
    kernel_ms: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Failed:
    """A pass that gave no number: too noisy this time (measured again in the next pass), or a
    model the device `refused` (never measured again)."""

    error: str
    refused: bool = False


Outcome = Pass | Failed


class CalibrationJournal:
    """The journal of one calibration (see the module docstring)."""

    def __init__(self, out_dir: Path, device: str, options: Mapping[str, Any], *, resume: bool) -> None:
        self.path = out_dir / f"{_file_safe(device)}{JOURNAL_SUFFIX}"
        self.models_dir = out_dir / f"{_file_safe(device)}.models"
        self._ledger: Ledger[JournalEntry] = Ledger(self.path, JournalEntry.from_dict)
        entries = self._ledger.load()
        if entries and not resume:
            raise AdacompError(
                f"--out: {self.path} holds a calibration already; pass --resume to continue it, "
                "or choose another --out"
            )
        wanted = {k: options[k] for k in sorted(options)}
        if entries:
            started = dict(entries[0].data) if entries[0].kind == "options" else {}
            if started != wanted:
                differ = ", ".join(
                    f"{k} {started.get(k)!r} (now {wanted.get(k)!r})"
                    for k in sorted(set(started) | set(wanted))
                    if started.get(k) != wanted.get(k)
                )
                raise AdacompError(f"--resume: {self.path} was started with other options: {differ}")
        else:
            self._ledger.append(JournalEntry(0, "options", wanted))
            entries = self._ledger.load()
        self._next = max(e.number for e in entries) + 1
        self._models = {str(e.data["key"]): e.data for e in entries if e.kind == "model"}
        self._passes: dict[tuple[str, str], list[Outcome]] = {}
        for entry in entries:
            if entry.kind == "pass":
                self._passes.setdefault((str(entry.data["label"]), str(entry.data["name"])), []).append(
                    _pass_of(entry.data)
                )

    @property
    def measured(self) -> int:
        """How many passes the journal holds (what a resume does not measure again)."""
        return sum(len(passes) for passes in self._passes.values())

    def get(self, key: str) -> CalibrationModel | None:
        """A model generated before (see `calibration_models`' cache), read back."""
        found = self._models.get(key)
        if found is None:
            return None
        path = self.models_dir / f"{found['sha256']}.onnx"
        try:
            data = path.read_bytes()
        except OSError:
            return None  # its file is gone: generate it again
        if hashlib.sha256(data).hexdigest() != found["sha256"]:
            return None
        return CalibrationModel(str(found["name"]), str(found["family"]), data, int(found["index"]))

    def put(self, key: str, model: CalibrationModel) -> None:
        """Keep a model just generated, before it is measured."""
        sha256 = hashlib.sha256(model.data).hexdigest()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.models_dir / f"{sha256}.onnx", model.data, durable=True)
        entry = {
            "key": key,
            "name": model.name,
            "family": model.family,
            "index": model.index,
            "sha256": sha256,
        }
        self._append("model", entry)
        self._models[key] = entry

    def passes(self, label: str, name: str) -> list[Outcome]:
        """The passes measured so far of model `name` in the part `label` of the calibration."""
        return list(self._passes.get((label, name), []))

    def add_pass(self, label: str, name: str, measured: Outcome) -> None:
        if isinstance(measured, Failed):
            entry: dict[str, Any] = {
                "label": label,
                "name": name,
                "error": measured.error,
                "refused": measured.refused,
            }
        else:
            kernels = dict(measured.kernel_ms) if measured.kernel_ms is not None else None
            entry = {"label": label, "name": name, "low_ms": measured.low_ms, "kernel_ms": kernels}
        self._append("pass", entry)
        self._passes.setdefault((label, name), []).append(measured)

    def _append(self, kind: str, data: Mapping[str, Any]) -> None:
        self._ledger.append(JournalEntry(self._next, kind, data))
        self._next += 1


def _pass_of(data: Mapping[str, Any]) -> Outcome:
    if "error" in data:
        return Failed(str(data["error"]), bool(data.get("refused", False)))
    kernels = data.get("kernel_ms")
    return Pass(float(data["low_ms"]), {str(k): float(v) for k, v in kernels.items()} if kernels else None)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

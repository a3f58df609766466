"""Context traces and their replay: how adaptation would have behaved over a day of use.

A trace is a list of timestamped contexts (CSV or JSON, or the built-in `drain_trace`). Replaying
it through a Selector gives, per step, the configuration chosen and whether it fitted; replaying
it against one fixed configuration gives what shipping a single compressed model would have
cost. No ONNX model runs here: the manifest's measurements are the costs.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adacomp.errors import AdacompError, shown
from adacomp.runtime.manifest import Manifest
from adacomp.runtime.selector import CONTEXT_FIELDS, Context, Selector, context_value
from adacomp.safe_load import parse_json, read_text

TRACE_COLUMNS = ("t", *CONTEXT_FIELDS)
_CSV_KEY = "{}, column {!r}"
_JSON_KEY = "{}.{}"


class TraceError(AdacompError):
    """A trace file a user gave is invalid; the message names the file, row and column."""


@dataclass(frozen=True)
class TracePoint:
    t: float
    context: Context


def load_trace(path: str | os.PathLike[str]) -> list[TracePoint]:
    """Read a trace: CSV with a header (column `t` required) or a JSON list of objects.

    The other columns (keys) are Context fields; an empty cell (null) means "not given".
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise TraceError(f"{path}: expected a .csv or .json trace, got {path.suffix or 'no suffix'}")
    try:
        text = read_text(path, "trace", shown=str(path))
    except AdacompError as exc:
        raise TraceError(str(exc)) from None
    points = _csv_points(path, text) if suffix == ".csv" else _json_points(path, text)
    if not points:
        raise TraceError(f"{path}: no trace points")
    for (where, point), (_, previous) in zip(points[1:], points, strict=False):
        if point.t < previous.t:
            raise TraceError(f"{path}: {where}: t goes back in time ({point.t:g} after {previous.t:g})")
    return [point for _, point in points]


def _csv_points(path: Path, text: str) -> list[tuple[str, TracePoint]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        return []
    columns = [name.strip() for name in header]
    if "t" not in columns:
        raise TraceError(
            f"{path}: line 1: the header must name a column 't' (and any of {', '.join(CONTEXT_FIELDS)}); "
            f"got {', '.join(map(repr, columns))}"
        )
    for name in columns:
        if name not in TRACE_COLUMNS:
            raise TraceError(
                f"{path}: line 1: unknown column {shown(name)}; expected t, {', '.join(CONTEXT_FIELDS)}"
            )
    if len(set(columns)) != len(columns):
        raise TraceError(f"{path}: line 1: a column is named twice: {', '.join(columns)}")
    points = []
    for cells in reader:
        where = f"line {reader.line_num}"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            raise TraceError(f"{path}: {where}: {len(cells)} cells, the header has {len(columns)}")
        values: dict[str, float | None] = {}
        for name, cell in zip(columns, cells, strict=True):
            cell = cell.strip()
            if not cell:
                values[name] = None
                continue
            try:
                values[name] = float(cell)
            except ValueError:
                raise TraceError(
                    f"{path}: {_CSV_KEY.format(where, name)}: expected a number, got {shown(cell)}"
                ) from None
        points.append((where, _point(path, where, values, _CSV_KEY)))
    return points


def _json_points(path: Path, text: str) -> list[tuple[str, TracePoint]]:
    try:
        data = parse_json(text, str(path))
    except AdacompError as exc:
        raise TraceError(str(exc)) from None
    if not isinstance(data, list):
        raise TraceError(f'{path}: expected a list of objects like {{"t": 0, "battery": 0.9}}')
    points = []
    for i, row in enumerate(data):
        where = f"[{i}]"
        if not isinstance(row, dict):
            raise TraceError(f"{path}: {where}: expected an object, got {shown(row)}")
        for name in row:
            if name not in TRACE_COLUMNS:
                raise TraceError(
                    f"{path}: {where}.{name}: unknown key; expected t, {', '.join(CONTEXT_FIELDS)}"
                )
        for name, value in row.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise TraceError(f"{path}: {where}.{name}: expected a number or null, got {shown(value)}")
        points.append((where, _point(path, where, row, _JSON_KEY)))
    return points


def _point(path: Path, where: str, values: Mapping[str, Any], key: str) -> TracePoint:
    """`key` formats a field's place: "line 3, column 't'" in a CSV, "[2].t" in JSON."""
    t = values.get("t")
    if t is None or not math.isfinite(t):
        raise TraceError(f"{path}: {key.format(where, 't')}: expected a finite time, got {shown(t)}")
    checked = {}
    for name in CONTEXT_FIELDS:
        try:
            checked[name] = context_value(name, values.get(name))
        except ValueError as exc:
            raise TraceError(f"{path}: {key.format(where, name)}: {exc}") from None
    return TracePoint(float(t), Context(**checked))


def write_trace_csv(points: Iterable[TracePoint], path: str | os.PathLike[str]) -> Path:
    """Write a trace that `load_trace` reads back exactly (floats as repr, None as empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRACE_COLUMNS)
        for point in points:
            values = point.context.to_dict()
            writer.writerow(
                [repr(point.t), *("" if values[n] is None else repr(values[n]) for n in CONTEXT_FIELDS)]
            )
    return path


def drain_trace(
    latency_range_ms: tuple[float, float],
    steps: int = 120,
    seed: int = 0,
    *,
    memory_range_mb: tuple[float, float] | None = None,
    noise: float = 0.03,  # relative sd of the budgets: what a real latency/memory probe jitters by
) -> list[TracePoint]:
    """A deterministic demo trace: a phone in use while its battery drains from 1.0 to 0.05.

    The latency budget goes through phases, as fractions of the bundle's latency range (so the
    trace suits any device): relaxed (every configuration fits), tight while the app is in the
    foreground (only the fastest quarter fits), then moderate. With `memory_range_mb`, a memory
    pressure episode (another app starts) leaves room for the smaller configurations only.
    Budgets carry seeded multiplicative noise so that hysteresis has something to ignore.
    """
    low, high = latency_range_ms
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"latency_range_ms: expected 0 < low <= high, got {latency_range_ms!r}")
    if steps < 2:
        raise ValueError(f"steps: expected at least 2, got {steps}")
    rng = np.random.default_rng(seed)
    jitter = np.clip(1.0 + noise * rng.standard_normal((2, steps)), 0.9, 1.1)
    phase = np.arange(steps) / steps
    tight = max(low * 1.15, low + 0.25 * (high - low))  # the fastest configuration always fits
    budget = (
        np.select([phase < 0.3, phase < 0.6], [high * 1.15, tight], default=low + 0.6 * (high - low))
        * jitter[0]
    )
    battery = np.linspace(1.0, 0.05, steps)
    free = np.full(steps, np.nan)
    if memory_range_mb is not None:
        mem_low, mem_high = memory_range_mb
        if not (math.isfinite(mem_low) and math.isfinite(mem_high) and 0 <= mem_low <= mem_high):
            raise ValueError(f"memory_range_mb: expected 0 <= low <= high, got {memory_range_mb!r}")
        pressure = (phase >= 0.75) & (phase < 0.9)
        room = max(mem_low * 1.15, mem_low + 0.3 * (mem_high - mem_low))
        free = np.where(pressure, room * jitter[1], np.nan)
    return [
        TracePoint(
            float(i),
            Context(
                latency_budget_ms=float(budget[i]),
                battery=round(float(battery[i]), 6),
                free_memory_mb=None if math.isnan(free[i]) else float(free[i]),
            ),
        )
        for i in range(steps)
    ]


@dataclass(frozen=True)
class ReplayStep:
    t: float
    context: Context
    index: int
    id: str
    fallback: bool
    switched: bool
    accuracy: float
    latency_ms: float
    energy_mj: float | None
    memory_mb: float
    violated: tuple[str, ...]  # the context's constraints this configuration broke

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "context": self.context.to_dict(),
            "id": self.id,
            "fallback": self.fallback,
            "switched": self.switched,
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
            "memory_mb": self.memory_mb,
            "violated": list(self.violated),
        }


@dataclass(frozen=True)
class Replay:
    label: str  # "adaptive" or "static <id>"
    steps: tuple[ReplayStep, ...]

    def summary(self) -> dict[str, Any]:
        steps = self.steps
        known = [s.energy_mj for s in steps if s.energy_mj is not None]
        return {
            "steps": len(steps),
            "switches": sum(s.switched for s in steps),
            "fallbacks": sum(s.fallback for s in steps),
            "violations": sum(bool(s.violated) for s in steps),
            "configurations_used": len({s.id for s in steps}),
            "mean_accuracy": float(np.mean([s.accuracy for s in steps])) if steps else None,
            "total_energy_mj": None if not known or len(known) < len(steps) else float(sum(known)),
            "mean_latency_ms": float(np.mean([s.latency_ms for s in steps])) if steps else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "summary": self.summary(), "steps": [s.to_dict() for s in self.steps]}


def replay(selector: Selector, trace: Sequence[TracePoint]) -> Replay:
    """Run the selector over the trace from a fresh state (it is reset first, and left at the end)."""
    selector.reset()
    steps = []
    for point in trace:
        selection = selector.select(point.context)
        steps.append(_step(selector, point, selection.index, selection.fallback, selection.switched))
    return Replay("adaptive", tuple(steps))


def replay_static(manifest: Manifest, device: str, config_id: str, trace: Sequence[TracePoint]) -> Replay:
    """The same trace served by one fixed configuration: what shipping a single model costs."""
    selector = Selector(manifest, device)
    index = manifest.index(config_id)
    return Replay(f"static {config_id}", tuple(_step(selector, p, index, False, False) for p in trace))


def _step(selector: Selector, point: TracePoint, index: int, fallback: bool, switched: bool) -> ReplayStep:
    return ReplayStep(
        t=point.t,
        context=point.context,
        index=index,
        id=selector.ids[index],
        fallback=fallback,
        switched=switched,
        accuracy=float(selector.accuracy[index]),
        latency_ms=float(selector.latency_ms[index]),
        energy_mj=float(selector.energy_mj[index]) if selector.has_energy else None,
        memory_mb=float(selector.memory_mb[index]),
        violated=selector.violations(index, point.context),
    )

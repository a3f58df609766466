"""CompressionPlan: what to do to which layer, as replayable data.

A plan maps layer names to an ordered tuple of steps. It is frozen and hashable, has a stable
content hash (the farm caches measurements by it, MLflow logs it), and round-trips through JSON
exactly. It knows nothing of torch: validation against a model lives in `compress`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError, shown
from adacomp.safe_load import parse_json, read_text
from adacomp.search_spaces.params import ParamValue

PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Step:
    """One technique applied to one layer, with its parameters (kept sorted for hashing)."""

    technique: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    @classmethod
    def of(cls, technique: str, **params: ParamValue) -> Step:
        return cls(technique, tuple(sorted(params.items())))

    @property
    def kwargs(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"technique": self.technique, "params": dict(self.params)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.technique}({inner})"


@dataclass(frozen=True)
class CompressionPlan:
    """Layer name -> ordered steps. Layers are kept sorted so equal plans compare and hash equal."""

    layers: tuple[tuple[str, tuple[Step, ...]], ...] = field(default=())

    def __post_init__(self) -> None:
        names = [name for name, _ in self.layers]
        if len(set(names)) != len(names):
            raise AdacompError(f"plan names a layer twice: {sorted(names)}")
        if any(not steps for _, steps in self.layers):
            empty = next(name for name, steps in self.layers if not steps)
            raise AdacompError(f"plan: layer {shown(empty)} has no steps")
        object.__setattr__(self, "layers", tuple(sorted(self.layers)))

    @classmethod
    def from_mapping(cls, layers: Mapping[str, Sequence[Step]]) -> CompressionPlan:
        return cls(tuple((name, tuple(steps)) for name, steps in layers.items() if steps))

    def __iter__(self) -> Iterator[tuple[str, tuple[Step, ...]]]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __bool__(self) -> bool:
        return bool(self.layers)

    def steps_for(self, layer: str) -> tuple[Step, ...]:
        return dict(self.layers).get(layer, ())

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.layers)

    def techniques(self) -> set[str]:
        return {step.technique for _, steps in self.layers for step in steps}

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_FORMAT_VERSION,
            "layers": {name: [step.to_dict() for step in steps] for name, steps in self.layers},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @property
    def hash(self) -> str:
        """Stable across processes and Python versions: sha256 of the canonical JSON."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: object, source: str = "plan") -> CompressionPlan:
        if not isinstance(data, dict):
            raise AdacompError(f"{source}: expected a JSON object with 'layers', got {type(data).__name__}")
        version = data.get("version", PLAN_FORMAT_VERSION)
        if version != PLAN_FORMAT_VERSION:
            raise AdacompError(
                f"{source}: unsupported plan version {shown(version)}; expected {PLAN_FORMAT_VERSION}"
            )
        unknown = sorted(set(data) - {"version", "layers"})
        if unknown:
            raise AdacompError(f"{source}: unknown key {shown(unknown[0])}; expected 'version' and 'layers'")
        layers = data.get("layers")
        if not isinstance(layers, dict):
            raise AdacompError(f"{source}: 'layers' must map layer names to lists of steps")
        parsed: dict[str, list[Step]] = {}
        for name, steps in layers.items():
            if not isinstance(steps, list) or not steps:
                raise AdacompError(f"{source}: layers.{name} must be a non-empty list of steps")
            parsed[name] = [
                _parse_step(step, f"{source}: layers.{name}[{i}]") for i, step in enumerate(steps)
            ]
        return cls.from_mapping(parsed)

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> CompressionPlan:
        return cls.from_dict(parse_json(text, source), source)

    @classmethod
    def load(cls, path: str | Path) -> CompressionPlan:
        path = Path(path)
        return cls.from_json(read_text(path, "plan file"), source=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    def __str__(self) -> str:
        if not self.layers:
            return "(no compression)"
        return "; ".join(f"{name}: " + " -> ".join(map(str, steps)) for name, steps in self.layers)


def _parse_step(raw: object, where: str) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("technique"), str):
        raise AdacompError(f"{where}: expected {{'technique': NAME, 'params': {{...}}}}, got {shown(raw)}")
    unknown = sorted(set(raw) - {"technique", "params"})
    if unknown:
        raise AdacompError(f"{where}: unknown key {shown(unknown[0])}; expected 'technique' and 'params'")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise AdacompError(f"{where}: 'params' must be an object, got {shown(params)}")
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool):
            raise AdacompError(
                f"{where}: parameter {shown(key)} must be a number, string or bool, got {shown(value)}"
            )
    return Step(raw["technique"], tuple(sorted(params.items())))

"""Hyper-parameter spaces as plain data.

A technique describes its knobs with these specs; Optuna, Tune and the RL agent build their own
spaces from them, and plan validation checks values against them. Keeping them as frozen data
(not Optuna distributions) is what lets `search_spaces` stay free of any search library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adacomp.errors import AdacompError

ParamValue = float | int | str | bool


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    default: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} outside [{self.low}, {self.high}]")

    def validate(self, where: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise AdacompError(f"{where}: expected a number in [{self.low}, {self.high}], got {value!r}")
        if not self.low <= value <= self.high:
            raise AdacompError(f"{where}: {value!r} is outside [{self.low}, {self.high}]")
        return float(value)

    def grid(self, n: int) -> tuple[float, ...]:
        """`n` evenly spaced values (log-spaced when `log`), for discrete agents and tables."""
        if n <= 1:
            return (self.default,)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return tuple(math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n))
        return tuple(self.low + (self.high - self.low) * i / (n - 1) for i in range(n))

    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "float",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "default": self.default,
        }


@dataclass(frozen=True)
class IntParam:
    low: int
    high: int
    default: int

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} outside [{self.low}, {self.high}]")

    def validate(self, where: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AdacompError(f"{where}: expected an integer in [{self.low}, {self.high}], got {value!r}")
        if not self.low <= value <= self.high:
            raise AdacompError(f"{where}: {value!r} is outside [{self.low}, {self.high}]")
        return value

    def grid(self, n: int) -> tuple[int, ...]:
        if n <= 1:
            return (self.default,)
        values = {round(self.low + (self.high - self.low) * i / (n - 1)) for i in range(n)}
        return tuple(sorted(values))

    def describe(self) -> str:
        return f"int in [{self.low}, {self.high}]"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "default": self.default}


@dataclass(frozen=True)
class ChoiceParam:
    choices: tuple[str | int | float | bool, ...]
    default: str | int | float | bool

    def __post_init__(self) -> None:
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} not among {self.choices!r}")

    def validate(self, where: str, value: object) -> ParamValue:
        for choice in self.choices:
            if type(choice) is type(value) and choice == value:
                return choice
        options = ", ".join(repr(c) for c in self.choices)
        raise AdacompError(f"{where}: expected one of {options}, got {value!r}")

    def grid(self, n: int) -> tuple[ParamValue, ...]:
        return self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "choices": list(self.choices), "default": self.default}


ParamSpec = FloatParam | IntParam | ChoiceParam


def validate_params(
    where: str, specs: Mapping[str, ParamSpec], params: Mapping[str, object]
) -> dict[str, ParamValue]:
    """Check a step's parameters against its specs: no missing, no unknown, all in range."""
    unknown = sorted(set(params) - set(specs))
    if unknown:
        expected = ", ".join(sorted(specs)) or "none"
        raise AdacompError(f"{where}: unknown parameter {unknown[0]!r}; expected: {expected}")
    missing = [name for name in specs if name not in params]
    if missing:
        name = missing[0]
        raise AdacompError(f"{where}: missing parameter {name!r} ({specs[name].describe()})")
    return {name: spec.validate(f"{where}: {name}", params[name]) for name, spec in specs.items()}


def defaults(specs: Mapping[str, ParamSpec]) -> dict[str, ParamValue]:
    return {name: spec.default for name, spec in specs.items()}

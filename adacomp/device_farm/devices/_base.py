"""The protocol every device kind follows (emulated, host, remote agent, Android over adb).

A device takes an ONNX model and settings and returns a Measurement, or raises DeviceError.
It does not queue, retry or cache: the farm does that around it (leases, quarantine, store),
so every kind gets the same isolation. Contract tests: tests/device_farm/test_device_contract.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from adacomp.device_farm.measurement import Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError


class DeviceError(AdacompError):
    """A device could not produce a measurement (unreachable, crashed, timed out, refused)."""


class ModelRefused(DeviceError):
    """The device works; this one model cannot be measured on it (a graph its runtime will not
    load or run, more memory than it has, a graph its emulator cannot price). Retrying cannot
    change that and it says nothing about the device's health: the farm records it and moves
    on, without a retry, a quarantine or another device of the class (which would refuse too)."""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class Device(ABC):
    kind: ClassVar[str]
    # Real hardware runs one measurement at a time and is pinned where it is attached;
    # an emulated device is a pure function and runs anywhere, concurrently.
    is_real: ClassVar[bool] = True

    def __init__(self, name: str, device_class: str) -> None:
        self.name = name
        self.device_class = device_class

    @abstractmethod
    def measure(self, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        """Measure `model`; raise DeviceError with a reason on failure."""

    @abstractmethod
    def health(self) -> Health:
        """Cheap check that the device can take a measurement now."""

    def runtime(self) -> str:
        return "unknown"

    def identity(self) -> str:
        """What this device is, as far as kernels go (identity.py); "" when it cannot say. The
        store keys measurements by it: another machine's numbers are never served as this one's."""
        return ""

    def close(self) -> None:
        """Release connections; the default has none."""

    def __repr__(self) -> str:
        return f"<{self.kind} device {self.name!r} ({self.device_class})>"

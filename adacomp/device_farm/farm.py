"""The farm: devices by name, leases, retries, quarantine, class fallback, and the store.

Every request ends in a Measurement or a DeviceError that says what happened; failures are
written to the store too, so nothing is silently dropped. Retries, quarantine and fallback are
for a device that fails; a model the device refuses (`ModelRefused`) fails alone, at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adacomp.device_farm.config import (
    AdbSpec,
    AgentSpec,
    DeviceSpec,
    EmulatedSpec,
    FarmConfig,
    HostSpec,
    default_farm_config,
)
from adacomp.device_farm.devices._base import Device, DeviceError, ModelRefused
from adacomp.device_farm.leases import DeviceBusy, Lease
from adacomp.device_farm.measurement import Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings
from adacomp.device_farm.store import MeasurementStore


def build_device(spec: DeviceSpec) -> Device:
    """The device object for a config entry (imports each kind only when used)."""
    if isinstance(spec, EmulatedSpec):
        from adacomp.device_farm.devices.emulated import EmulatedDevice

        return EmulatedDevice(spec.name, spec.profile, device_class=spec.device_class)
    if isinstance(spec, HostSpec):
        from adacomp.device_farm.devices.host import HostDevice

        return HostDevice(spec.name, spec.device_class, cores=spec.cores, timeout_s=spec.timeout_s)
    if isinstance(spec, AgentSpec):
        from adacomp.device_farm.devices.agent import AgentDevice

        return AgentDevice(
            spec.name, spec.device_class, url=spec.url, token_file=spec.token_file, timeout_s=spec.timeout_s
        )
    if isinstance(spec, AdbSpec):
        from adacomp.device_farm.devices.adb import AdbDevice

        return AdbDevice(
            spec.name,
            spec.device_class,
            serial=spec.serial,
            benchmark_binary=spec.benchmark_binary,
            adb=spec.adb,
            remote_dir=spec.remote_dir,
            energy=spec.energy,
            libraries=spec.libraries,
            timeout_s=spec.timeout_s,
        )
    raise AssertionError(f"unhandled device spec {spec!r}")


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    kind: str
    device_class: str
    healthy: bool
    detail: str
    quarantined_for_s: float  # 0 when not quarantined
    waiting: int
    identity: str = ""  # what it is (identity.py); "" when it cannot say


class Farm:
    def __init__(
        self,
        config: FarmConfig | None = None,
        *,
        store: MeasurementStore | None = None,
        devices: Sequence[Device] | None = None,
    ) -> None:
        self.config = config or default_farm_config()
        if devices is None:
            devices = [build_device(spec) for spec in self.config.devices]
        self.devices: dict[str, Device] = {d.name: d for d in devices}
        if store is None and self.config.store is not None:
            store = MeasurementStore(self.config.store)
        self.store = store
        self._leases = {
            d.name: Lease(d.name, self.config.queue_size, self.config.lease_timeout_s)
            for d in devices
            if d.is_real
        }
        self._quarantine: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- queries -----------------------------------------------------------------------------
    def device(self, name: str) -> Device:
        try:
            return self.devices[name]
        except KeyError:
            known = ", ".join(self.devices)
            raise DeviceError(f"unknown device {name!r}; devices in the farm: {known}") from None

    def identity(self, name: str) -> str:
        """What device `name` is (identity.py), "" when it cannot say."""
        return self.device(name).identity()

    def quarantined_for(self, name: str) -> float:
        with self._lock:
            return max(0.0, self._quarantine.get(name, 0.0) - time.monotonic())

    def status(self) -> list[DeviceStatus]:
        rows = []
        for name, device in self.devices.items():
            try:
                health = device.health()
                healthy, detail = health.ok, health.detail
            except DeviceError as exc:
                healthy, detail = False, str(exc)
            lease = self._leases.get(name)
            rows.append(
                DeviceStatus(
                    name=name,
                    kind=device.kind,
                    device_class=device.device_class,
                    healthy=healthy,
                    detail=detail,
                    quarantined_for_s=self.quarantined_for(name),
                    waiting=lease.waiting if lease else 0,
                    identity=device.identity() if healthy else "",
                )
            )
        return rows

    # --- measuring ---------------------------------------------------------------------------
    def measure(
        self,
        model: OnnxModel,
        device: str,
        settings: MeasureSettings | None = None,
        *,
        fresh: bool = False,
    ) -> Measurement:
        """Measure on `device`: from the store when known, else leased, retried, or replaced."""
        settings = settings or MeasureSettings()
        self.device(device)
        if self.store is not None and not fresh:
            cached = self.store.lookup(model.sha256, device, settings.key(), self.devices[device].identity())
            if cached is not None:
                return cached
        try:
            return self._measure_on(device, model, settings)
        except (DeviceBusy, ModelRefused):
            raise
        except DeviceError as failure:
            if not self.config.fallback_to_class:
                raise
            for other in self._same_class(device):
                try:
                    return self._measure_on(other, model, settings)
                except DeviceError:
                    continue
            raise DeviceError(
                f"{failure}; no other device of class {self.devices[device].device_class!r} could measure it"
            ) from None

    def measure_many(
        self, model: OnnxModel, devices: Sequence[str], settings: MeasureSettings | None = None
    ) -> dict[str, Measurement]:
        return {name: self.measure(model, name, settings) for name in devices}

    def _same_class(self, name: str) -> list[str]:
        wanted = self.devices[name].device_class
        return [
            other
            for other, device in self.devices.items()
            if other != name and device.device_class == wanted and self.quarantined_for(other) == 0
        ]

    def _measure_on(self, name: str, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        device = self.devices[name]
        resting = self.quarantined_for(name)
        if resting > 0:
            raise DeviceError(f"device {name!r} is quarantined for another {resting:.0f} s after failures")
        last: DeviceError | None = None
        for _attempt in range(1 + self.config.retries):
            try:
                measurement = self._run(device, model, settings)
            except DeviceBusy:
                raise
            except ModelRefused as exc:  # the model's problem: recorded, never held against the device
                if self.store is not None:
                    self.store.add_failure(
                        name, device.device_class, model.sha256, settings.key(), str(exc), device.identity()
                    )
                raise
            except DeviceError as exc:
                last = exc
                if self.store is not None:
                    self.store.add_failure(
                        name, device.device_class, model.sha256, settings.key(), str(exc), device.identity()
                    )
                continue
            if self.store is not None:
                self.store.add(measurement)
            return measurement
        with self._lock:
            self._quarantine[name] = time.monotonic() + self.config.quarantine_s
        attempts = 1 + self.config.retries
        raise DeviceError(
            f"{last} (failed {attempts} time{'s' if attempts > 1 else ''}; "
            f"quarantined for {self.config.quarantine_s:g} s)"
        )

    def _run(self, device: Device, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        lease = self._leases.get(device.name)
        if lease is None:  # emulated: pure, concurrent
            return device.measure(model, settings)
        with lease.hold():
            return device.measure(model, settings)

    def close(self) -> None:
        for device in self.devices.values():
            device.close()


def open_farm(
    config_path: Path | None = None, store: Path | None = None, *, default_store: Path | None = None
) -> Farm:
    """The farm of `config_path` (the built-in one without). The store: `store` when given, else
    the config's own `store:`, else `default_store` (the CLI's `.adacomp/measurements`)."""
    from adacomp.device_farm.config import load_farm_config

    config = load_farm_config(config_path) if config_path is not None else default_farm_config()
    chosen = store or config.store or default_store
    if chosen != config.store:
        config = config.model_copy(update={"store": chosen})
    return Farm(config)

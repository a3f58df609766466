"""The farm under Ray: one actor per real device, pinned to the node it is attached to.

A real device's actor asks for the custom resource `device:<name>`, which only the node the
device is plugged into offers (`ray start --resources='{"device:pixel4": 1}'`, or cluster.yaml),
so Ray places it there and never twice. Emulated devices are pure functions and run in the
caller. On one machine, `init_local_ray` splits the cores: the host device measures on its own
cores, Ray's workers train on the rest (see device_farm.cores).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray

from adacomp.device_farm import DeviceError, Farm, FarmConfig, Measurement, MeasureSettings, OnnxModel
from adacomp.device_farm.config import DeviceSpec, EmulatedSpec, HostSpec
from adacomp.device_farm.cores import CoreReservation, available_cores, pin_process, reserve_cores
from adacomp.device_farm.devices._base import ModelRefused


def device_resource(name: str) -> str:
    return f"device:{name}"


def init_local_ray(
    config: FarmConfig, measurement_cores: int = 1, **ray_kwargs: Any
) -> CoreReservation | None:
    """Start an embedded Ray whose workers cannot run on the host device's cores.

    Pins this (driver) process to the training cores first: the raylet and its workers inherit
    the mask. Offers one `device:<name>` resource per real device configured for this machine.
    With `measurement_cores=0` (no host device measures here) every core trains. Always a new
    instance (`address="local"`): left to itself, `ray.init` joins the last cluster a `ray start`
    left on this machine, and then refuses the `num_cpus` given here.
    """
    resources = {
        device_resource(spec.name): 1.0 for spec in config.devices if not isinstance(spec, EmulatedSpec)
    }
    if measurement_cores == 0:
        ray.init(address="local", num_cpus=len(available_cores()), resources=resources, **ray_kwargs)
        return None
    reservation = reserve_cores(available_cores(), measurement_cores)
    pin_process(reservation.training)
    ray.init(address="local", num_cpus=len(reservation.training), resources=resources, **ray_kwargs)
    return reservation


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class DeviceActor:
    """Serves one real device; measurements on it run one at a time (actor calls are serial)."""

    def __init__(self, spec_json: str, cores: list[int] | None, store: str | None = None) -> None:
        from pathlib import Path

        from pydantic import TypeAdapter

        spec: DeviceSpec = TypeAdapter(DeviceSpec).validate_json(spec_json)
        if isinstance(spec, HostSpec) and cores:
            pin_process(cores)
            spec = spec.model_copy(update={"cores": tuple(cores)})
        # The farm's store (an absolute path, see load_farm_config) on the device's node: the
        # measurements of real devices are the ones worth keeping (and calibrating on).
        self.farm = Farm(
            FarmConfig(
                devices=(spec,),
                retries=0,
                fallback_to_class=False,
                quarantine_s=0,
                store=Path(store) if store else None,
            )
        )
        self.name = spec.name

    def measure(self, model: bytes, settings_json: str) -> dict[str, Any]:
        settings = MeasureSettings.model_validate_json(settings_json)
        return self.farm.measure(OnnxModel(model), self.name, settings).to_dict()

    def health(self) -> tuple[bool, str]:
        status = self.farm.status()[0]
        return status.healthy, status.detail

    def identity(self) -> str:
        return self.farm.identity(self.name)

    def affinity(self) -> list[int]:
        import os

        return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


class RayFarm:
    """Measures through device actors (real devices) or in-process (emulated ones).

    A device's actor is created at its first measurement, not with the farm: a resumed search
    with nothing left to measure never starts Ray at all (search/job.py).
    """

    def __init__(self, config: FarmConfig, reservation: CoreReservation | None = None) -> None:
        self.config = config
        self.reservation = reservation
        emulated = tuple(spec for spec in config.devices if isinstance(spec, EmulatedSpec))
        self._local = Farm(config.model_copy(update={"devices": emulated})) if emulated else None
        self._real = {spec.name: spec for spec in config.devices if not isinstance(spec, EmulatedSpec)}
        self.actors: dict[str, Any] = {}

    def _actor(self, device: str) -> Any:
        if device not in self.actors:
            spec = self._real[device]
            reservation = self.reservation
            cores = list(reservation.measurement) if reservation and isinstance(spec, HostSpec) else None
            store = str(self.config.store) if self.config.store else None
            self.actors[device] = DeviceActor.options(  # type: ignore[attr-defined]
                name=f"adacomp-device-{spec.name}",
                get_if_exists=True,
                resources={device_resource(spec.name): 1.0},
            ).remote(spec.model_dump_json(by_alias=True), cores, store)
        return self.actors[device]

    def measure(self, model: OnnxModel, device: str, settings: MeasureSettings | None = None) -> Measurement:
        settings = settings or MeasureSettings()
        if device in self._real:
            try:
                data = ray.get(self._actor(device).measure.remote(model.data, settings.model_dump_json()))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()  # type: ignore[no-untyped-call]
                refused = ModelRefused if isinstance(cause, ModelRefused) else DeviceError
                raise refused(str(cause).strip().splitlines()[-1]) from None
            except ray.exceptions.RayActorError as exc:
                raise DeviceError(f"device {device!r}: its actor died ({type(exc).__name__})") from None
            return Measurement.from_dict(data)
        if self._local is None or device not in self._local.devices:
            known = ", ".join([*self._real, *(self._local.devices if self._local else {})])
            raise DeviceError(f"unknown device {device!r}; devices in the farm: {known}")
        return self._local.measure(model, device, settings)

    def identity(self, device: str) -> str:
        """What `device` is, asked where it is attached (identity.py)."""
        if device in self._real:
            try:
                return str(ray.get(self._actor(device).identity.remote()))
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError):
                return ""
        if self._local is None:
            return ""
        return self._local.identity(device)

    def measure_many(
        self, model: OnnxModel, devices: list[str], settings: MeasureSettings | None = None
    ) -> Mapping[str, Measurement]:
        return {name: self.measure(model, name, settings) for name in devices}


__all__ = ["DeviceActor", "RayFarm", "device_resource", "init_local_ray"]

"""The farm config (YAML): which devices, how to reach them, and the lease/retry policy.

Validated at the boundary with pydantic; an error names the file and the field. The built-in
default farm (every emulated profile plus this host) needs no file at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from adacomp.errors import AdacompError
from adacomp.yaml_config import ConfigModel, absolute, load_yaml_model

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_TIMEOUT_S = 7 * 24 * 3600.0
Core = Annotated[int, Field(ge=0, le=4095)]  # a CPU number (Linux caps them at 4096 by default)


class _Spec(ConfigModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(pattern=NAME, max_length=128)
    # The class a device stands for ("pixel4"); a failed device may be replaced by another of its class.
    device_class: str = Field(alias="class", pattern=NAME)


class EmulatedSpec(_Spec):
    kind: Literal["emulated"]
    profile: str  # a built-in profile name or a path to a profile YAML


class HostSpec(_Spec):
    kind: Literal["host"]
    device_class: str = Field("host", alias="class", pattern=NAME)
    cores: tuple[Core, ...] | None = None  # reserved for measurements; None = any core
    timeout_s: float = Field(300.0, gt=0, le=MAX_TIMEOUT_S)


class AgentSpec(_Spec):
    kind: Literal["agent"]
    url: str = Field(pattern=r"^https?://")
    token_file: Path
    timeout_s: float = Field(300.0, gt=0, le=MAX_TIMEOUT_S)


class AdbSpec(_Spec):
    kind: Literal["adb"]
    serial: str | None = None
    benchmark_binary: Path  # an Android build of onnxruntime_perf_test
    libraries: tuple[Path, ...] = ()  # shared libraries it needs (e.g. libonnxruntime.so)
    adb: str = "adb"
    remote_dir: str = "/data/local/tmp/adacomp"
    energy: bool = True  # sample the battery fuel gauge (see devices/adb.py for the USB caveat)
    timeout_s: float = Field(300.0, gt=0, le=MAX_TIMEOUT_S)


DeviceSpec = Annotated[EmulatedSpec | HostSpec | AgentSpec | AdbSpec, Field(discriminator="kind")]


class FarmConfig(ConfigModel):
    devices: tuple[DeviceSpec, ...] = Field(max_length=1024)
    queue_size: int = Field(16, ge=0, le=100_000)  # callers waiting for one device beyond the one measuring
    lease_timeout_s: float = Field(600.0, gt=0, le=MAX_TIMEOUT_S)  # how long a caller waits for its turn
    retries: int = Field(1, ge=0, le=10)  # a failed measurement is retried this many times
    quarantine_s: float = Field(300.0, ge=0, le=MAX_TIMEOUT_S)  # then the device rests this long
    fallback_to_class: bool = True  # then another device of the same class may answer
    store: Path | None = None  # measurement store directory; None: no store

    @model_validator(mode="after")
    def _unique_names(self) -> FarmConfig:
        names = [d.name for d in self.devices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"device name {duplicates[0]!r} is used twice")
        return self

    def device(self, name: str) -> DeviceSpec:
        for spec in self.devices:
            if spec.name == name:
                return spec
        known = ", ".join(d.name for d in self.devices)
        raise AdacompError(f"unknown device {name!r}; devices in the farm: {known}")


def load_farm_config(path: str | Path) -> FarmConfig:
    """Every path the file names (the store, token files, adb binaries and libraries, profile
    files) is made absolute against the file's directory when it is loaded: Ray Tune runs each
    trial in its own working directory, where a relative store used to land."""
    path = Path(path)
    config = load_yaml_model(path, FarmConfig, "farm config", "with 'devices'")
    base = path.absolute().parent
    devices = tuple(_absolute_paths(spec, base) for spec in config.devices)
    store = absolute(base, config.store) if config.store is not None else None
    return config.model_copy(update={"devices": devices, "store": store})


def _absolute_paths(spec: DeviceSpec, base: Path) -> DeviceSpec:
    from adacomp.device_farm.profiles import names_a_file  # here: profiles loads onnx

    if isinstance(spec, AgentSpec):
        return spec.model_copy(update={"token_file": absolute(base, spec.token_file)})
    if isinstance(spec, AdbSpec):
        return spec.model_copy(
            update={
                "benchmark_binary": absolute(base, spec.benchmark_binary),
                "libraries": tuple(absolute(base, lib) for lib in spec.libraries),
            }
        )
    if isinstance(spec, EmulatedSpec) and names_a_file(spec.profile):
        return spec.model_copy(update={"profile": str(absolute(base, Path(spec.profile)))})
    return spec


def default_farm_config(store: Path | None = None) -> FarmConfig:
    """Every built-in emulated profile (except the fitted `host` one) plus this machine's CPU."""
    from adacomp.device_farm.profiles import builtin_profile_names, load_profile

    devices: list[DeviceSpec] = []
    for name in builtin_profile_names():
        if name == "host":
            continue
        profile = load_profile(name)
        devices.append(
            EmulatedSpec(name=f"{name}", kind="emulated", profile=name, device_class=profile.device_class)
        )
    devices.append(HostSpec(name="host", kind="host", device_class="host"))
    return FarmConfig(devices=tuple(devices), store=store)

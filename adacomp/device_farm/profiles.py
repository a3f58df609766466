"""Device profiles: what an emulated device can do, as data files with their sources.

A profile holds the few numbers the analytic cost model (``cost_model.py``) needs: sustained
MAC throughput per precision and op kind for one thread, effective DRAM bandwidth, per-node
dispatch overhead, power, and memory. Built-in profiles live in ``profiles/*.yaml``, each
naming the datasheets and benchmarks its numbers come from; ``adacomp farm calibrate`` fits
the per-kind ``efficiency`` factors (and the overhead) to measurements and saves a new file.
Files are read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from adacomp.device_farm.graph import OpKind, Precision
from adacomp.errors import AdacompError
from adacomp.safe_load import load_yaml_file
from adacomp.yaml_config import ConfigModel, describe_validation_error

PROFILE_DIR = Path(__file__).with_name("profiles")

ComputeKind = Literal["conv", "depthwise_conv", "gemm"]
KernelGraph = Literal["replay", "extended", "all"]


# Per-unit rates and overheads: far beyond any real device, below what overflows a prediction.
MAX_RATE = 1e7

Rate = Annotated[float, Field(gt=0, le=MAX_RATE)]
Record = Annotated[int, Field(ge=-(10**12), le=10**12)] | Annotated[float, Field(ge=-1e12, le=1e12)]


class PublishedLatency(ConfigModel):
    """A latency someone measured on this device, and what the profile predicts for that graph."""

    source: str = Field(min_length=1)
    model: str = Field(min_length=1)  # one of `adacomp.device_farm.reference_models` names
    precision: Literal["fp32", "int8"]
    runtime: str = Field(min_length=1)  # e.g. "TFLite 2.1 benchmark_model, 1 thread"
    threads: int = Field(ge=1, le=64)
    published_ms: float = Field(gt=0, lt=1e6)
    predicted_ms: float = Field(gt=0, lt=1e6)  # this profile's prediction when the entry was written
    note: str = ""


COMPUTE_KIND_NAMES: tuple[ComputeKind, ...] = ("conv", "depthwise_conv", "gemm")


class DeviceProfile(ConfigModel):
    """One device as the cost model sees it. Absent int8/fp16 throughput means: no such kernels."""

    name: str = Field(min_length=1)
    description: str = ""
    device_class: str = Field(min_length=1)  # farm fallbacks stay within a class, e.g. "pixel4"
    sources: tuple[str, ...] = Field(min_length=1)  # where every number below comes from
    cores: int = Field(ge=1, le=512)  # cores an inference may use (threads beyond these do not help)
    freq_ghz: float = Field(gt=0, le=10)  # clock of the core the first thread runs on
    # Sustained GMAC/s of ONE thread, per precision and compute kind: peak x kernel efficiency.
    throughput_gmacs: dict[Precision, dict[ComputeKind, Rate]]
    bandwidth_gbs: float = Field(gt=0, le=MAX_RATE)  # effective DRAM bandwidth one inference sees
    op_overhead_us: float = Field(ge=0, le=MAX_RATE)  # per executed node: dispatch, allocation, wake-up
    # Per inference, whatever the graph: the runtime's call path (binding inputs, allocating outputs).
    run_overhead_us: float = Field(0.0, ge=0, le=MAX_RATE)
    # Per-kind factor on the roofline time of an op (1.0 = as derived; < 1 slower): what calibration fits.
    efficiency: dict[OpKind, Annotated[float, Field(gt=0, le=1000)]] = Field(default_factory=dict)
    # Each extra thread adds this share of one thread's compute (big.LITTLE, shared caches).
    parallel_efficiency: float = Field(0.75, gt=0, le=1)
    active_power_w: float = Field(gt=0, le=10_000)  # CPU cluster + uncore while one thread runs
    extra_core_power_w: float = Field(0.0, ge=0, le=10_000)  # per additional busy core
    dram_pj_per_byte: float = Field(ge=0, le=MAX_RATE)
    memory_mb: float = Field(gt=0, le=1e9)  # RAM an app can use before it is killed
    runtime_arena_mb: float = Field(0.0, ge=0, le=1e9)  # fixed memory of the runtime, added to peaks
    # Which graph is priced: ONNX Runtime's optimised graph at level "all" (this machine's ISA)
    # or "extended" (the fusions every CPU gets), or the portable replay (`graph.py`).
    kernel_graph: KernelGraph = "extended"
    # A learned per-kernel model (JSON written by `farm calibrate`); relative to the profile file.
    kernel_model: str | None = None
    # The device a calibration fitted it on (identity.py) and that device's kind ("host", "agent"):
    # a profile of this host fitted on another CPU predicts that CPU (a warning says so).
    fitted_on: str | None = Field(None, max_length=500)
    fitted_on_kind: str | None = Field(None, max_length=40)
    # What calibration measured (held-out accuracy, noise floor): a record, not used to predict.
    calibration: dict[str, Record | str] = Field(default_factory=dict)
    # Published measurements of standard models on this device, with the profile's prediction.
    published: tuple[PublishedLatency, ...] = ()

    @field_validator("throughput_gmacs")
    @classmethod
    def _complete_throughput(cls, value: dict[Precision, dict[ComputeKind, float]]) -> Any:
        if "fp32" not in value:
            raise ValueError("needs an 'fp32' entry (every device runs fp32 kernels)")
        for precision, kinds in value.items():
            missing = [kind for kind in COMPUTE_KIND_NAMES if kind not in kinds]
            if missing:
                raise ValueError(
                    f"{precision!r} lacks {', '.join(missing)} (give all of {COMPUTE_KIND_NAMES})"
                )
            bad = {kind: gmacs for kind, gmacs in kinds.items() if not gmacs > 0}
            if bad:
                raise ValueError(f"{precision!r} throughput must be > 0 GMAC/s, got {bad}")
        return value

    @field_validator("efficiency")
    @classmethod
    def _positive_efficiency(cls, value: dict[OpKind, float]) -> Any:
        bad = {str(kind): factor for kind, factor in value.items() if not factor > 0}
        if bad:
            raise ValueError(f"efficiency factors must be > 0, got {bad}")
        return value

    @field_validator("sources")
    @classmethod
    def _nonempty_sources(cls, value: tuple[str, ...]) -> Any:
        if any(not source.strip() for source in value):
            raise ValueError("sources must be non-empty strings")
        return value

    @model_validator(mode="after")
    def _named(self) -> DeviceProfile:
        if any(ch in self.name for ch in "/\\"):
            raise ValueError(f"name {self.name!r} must not contain path separators")
        return self

    def has_kernels(self, precision: Precision) -> bool:
        return precision in self.throughput_gmacs

    def gmacs(self, precision: Precision, kind: OpKind) -> float:
        """Sustained GMAC/s of one thread for a compute kind at a precision it has kernels for."""
        return self.throughput_gmacs[precision][cast(ComputeKind, kind.value)]

    def efficiency_of(self, kind: OpKind) -> float:
        return self.efficiency.get(kind, 1.0)

    def thread_speedup(self, threads: int) -> float:
        """Compute speed-up of `threads` over one: capped at `cores`, sublinear beyond the first."""
        used = max(1, min(threads, self.cores))
        return 1.0 + (used - 1) * self.parallel_efficiency

    def power_w(self, threads: int) -> float:
        used = max(1, min(threads, self.cores))
        return self.active_power_w + (used - 1) * self.extra_core_power_w


def builtin_profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name (e.g. "pixel4"), or a profile YAML by path."""
    path = _resolve(name_or_path)
    data = load_yaml_file(path, "profile")
    if not isinstance(data, dict):
        raise AdacompError(f"profile {str(path)!r}: expected a mapping of fields, got {type(data).__name__}")
    try:
        profile = DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise AdacompError(f"profile {str(path)!r}: field {describe_validation_error(exc)}") from None
    if profile.kernel_model is not None:
        model_path = (path.parent / profile.kernel_model).resolve()
        if not model_path.is_file():
            raise AdacompError(
                f"profile {str(path)!r}: field kernel_model: file {profile.kernel_model!r} does not exist"
            )
        profile = profile.model_copy(update={"kernel_model": str(model_path)})
    return profile


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    """Write `profile` as YAML (safe_dump) that `load_profile` reads back unchanged."""
    path = Path(path)
    data = profile.model_dump(mode="json")
    data["sources"] = list(data["sources"])
    data["published"] = list(data["published"])
    if profile.kernel_model is not None:  # stored relative, so the pair can be moved together
        model_path = Path(profile.kernel_model).resolve()
        try:
            data["kernel_model"] = str(model_path.relative_to(path.parent.resolve()))
        except ValueError:
            data["kernel_model"] = str(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def names_a_file(profile: str) -> bool:
    """Whether a farm's `profile:` names a file rather than a built-in profile (the farm config
    makes such a path absolute by this rule; `_resolve` loads it by the same one)."""
    return "/" in profile or "\\" in profile or profile.endswith((".yaml", ".yml"))


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or names_a_file(text):
        path = Path(name_or_path)
        if not path.is_file():
            raise AdacompError(f"profile file {text!r} does not exist")
        return path
    path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise AdacompError(
            f"unknown device profile {text!r}; built-in profiles: {', '.join(builtin_profile_names())}"
        )
    return path

"""What a measurement is: latency statistics, energy, memory, storage, and where it came from.

Unknown is None, never an invented number. A Measurement is a frozen value with a flat dict
form, which is what travels over HTTP (JSON) and into the measurement store (Parquet).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["measured", "emulated"]


def robust_cv(samples_ms: Sequence[float]) -> float:
    """Spread of timings relative to their median: 1.4826 * MAD / median (std / mean for
    normal noise). What a device reports is the median, and a run preempted by another process
    (tens of times slower) moves neither the median nor this, where it can double std / mean:
    on a busy machine the noise test should refuse timings whose median is unsure, not those
    with a few interrupted runs."""
    if not samples_ms:
        return 0.0
    median = statistics.median(samples_ms)
    if median <= 0:
        return 0.0
    mad = statistics.median(abs(x - median) for x in samples_ms)
    return 1.4826 * mad / median


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): how trustworthy the timing is."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        if not samples_ms:
            raise ValueError("no latency samples")
        ordered = sorted(samples_ms)
        p90_index = min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)
        return cls(
            median_ms=statistics.median(ordered),
            p90_ms=ordered[p90_index],
            mean_ms=statistics.fmean(ordered),
            std_ms=statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
            runs=len(ordered),
        )

    @classmethod
    def exact(cls, ms: float) -> LatencyStats:
        """A prediction: one value, no spread (runs=0 says nothing was run)."""
        return cls(median_ms=ms, p90_ms=ms, mean_ms=ms, std_ms=0.0, runs=0)


@dataclass(frozen=True)
class Measurement:
    device: str  # the farm's name for the device, e.g. "pixel4-emu"
    device_class: str  # what it stands for, e.g. "pixel4"; fallbacks stay within a class
    runtime: str  # e.g. "onnxruntime 1.32.0 CPUExecutionProvider, 1 thread"
    source: Source
    latency: LatencyStats
    energy_mj: float | None  # per inference
    peak_memory_mb: float | None
    storage_bytes: int  # size of the model file as deployed
    model_hash: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    notes: str = ""  # e.g. "energy from RAPL package domain"
    identity: str = ""  # what measured it (identity.py): CPU, kernel ISA flags, cores, runtime

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = dict(self.settings)
        data["latency_cv"] = self.latency.cv
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        fields = dict(data)
        fields.pop("latency_cv", None)
        latency = fields.pop("latency")
        if not isinstance(latency, Mapping):
            raise ValueError(f"measurement 'latency' must be an object, got {latency!r}")
        if fields.get("source") not in ("measured", "emulated"):
            raise ValueError(
                f"measurement 'source' must be 'measured' or 'emulated', got {fields.get('source')!r}"
            )
        return cls(latency=LatencyStats(**latency), **fields)

    def summary(self) -> str:
        parts = [
            f"{self.device} ({self.device_class}, {self.source})",
            f"latency median {self.latency.median_ms:.3f} ms, p90 {self.latency.p90_ms:.3f} ms"
            + (f", cv {self.latency.cv:.1%} over {self.latency.runs} runs" if self.latency.runs else ""),
            f"energy {self.energy_mj:.3f} mJ" if self.energy_mj is not None else "energy unknown",
            f"peak memory {self.peak_memory_mb:.2f} MiB"
            if self.peak_memory_mb is not None
            else "peak memory unknown",
            f"storage {self.storage_bytes} B",
        ]
        return "; ".join(parts)

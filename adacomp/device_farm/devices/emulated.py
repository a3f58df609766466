"""An emulated device: the analytic cost model of a device profile, answering like a real device.

Pure and deterministic: no lease is needed and it runs anywhere, concurrently. Its measurements
say ``source="emulated"`` and ``runs=0`` so nothing downstream mistakes them for timings.
"""

from __future__ import annotations

import hashlib
import logging
from typing import ClassVar

from adacomp.device_farm.devices._base import Device, Health, ModelRefused
from adacomp.device_farm.emulator import predict_model, summarize
from adacomp.device_farm.identity import differs, host_identity
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.profiles import DeviceProfile, load_profile
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError

log = logging.getLogger(__name__)


def warn_if_fitted_elsewhere(profile: DeviceProfile) -> bool:
    """One warning when `profile` was calibrated on a host CPU other than this one: it predicts
    that CPU, not this (int8 alone differs 2x between AVX2 and AVX-512 VNNI machines)."""
    if profile.fitted_on_kind != "host" or not differs(profile.fitted_on, host_identity().describe()):
        return False
    log.warning(
        "profile %r was calibrated on another CPU (%s), not this one (%s): its latencies are that "
        "CPU's; calibrate this one with `adacomp farm calibrate --device host`",
        profile.name,
        profile.fitted_on,
        host_identity().describe(),
    )
    return True


class EmulatedDevice(Device):
    kind: ClassVar[str] = "emulated"
    is_real: ClassVar[bool] = False

    def __init__(self, name: str, profile: DeviceProfile | str, device_class: str | None = None) -> None:
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        super().__init__(name, device_class or self.profile.device_class)
        digest = hashlib.sha256(self.profile.model_dump_json().encode()).hexdigest()[:12]
        self._identity = f"emulated {self.profile.name} (profile {digest})"
        warn_if_fitted_elsewhere(self.profile)

    def runtime(self) -> str:
        return f"emulated onnxruntime-cpu (profile {self.profile.name})"

    def identity(self) -> str:
        """The profile's name and content: two profiles of one name predict differently."""
        return self._identity

    def measure(self, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        try:
            prediction = predict_model(
                model, self.profile, threads=settings.intra_op_threads, batch_size=settings.batch_size
            )
            summary = summarize(model, self.profile, settings.batch_size)  # cached by the call above
        except AdacompError as exc:
            raise ModelRefused(f"{self.name}: cannot emulate {model.name}: {exc}") from None
        if prediction.peak_memory_mb > self.profile.memory_mb:
            # A real device would kill the app; say so instead of returning a number.
            raise ModelRefused(
                f"{self.name}: {model.name} needs {prediction.peak_memory_mb:.1f} MiB at peak, "
                f"more than the {self.profile.memory_mb:.0f} MiB an app gets on {self.profile.name}"
            )
        method = "learned kernel model" if self.profile.kernel_model else "roofline cost model"
        notes = f"{method} over {self.profile.kernel_graph} kernels, profile {self.profile.name}"
        if summary.sparsity > 0:
            notes += f"; weight sparsity {summary.sparsity:.1%} reported, dense kernels do not skip zeros"
        return Measurement(
            device=self.name,
            device_class=self.device_class,
            runtime=self.runtime(),
            source="emulated",
            latency=LatencyStats.exact(prediction.latency_ms),
            energy_mj=prediction.energy_mj,
            peak_memory_mb=prediction.peak_memory_mb,
            storage_bytes=model.size,
            model_hash=model.sha256,
            settings=settings.key(),
            notes=notes,
            identity=self.identity(),
        )

    def health(self) -> Health:
        return Health(True, f"emulated from profile {self.profile.name}")

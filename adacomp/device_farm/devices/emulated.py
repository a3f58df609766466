"""An emulated device: the analytic cost model of a device profile, answering like a real device.

Pure and deterministic: no lease is needed and it runs anywhere, concurrently. Its measurements
say ``source="emulated"`` and ``runs=0`` so nothing downstream mistakes them for timings.
"""

from __future__ import annotations

from typing import ClassVar

from adacomp.device_farm.devices._base import Device, Health, ModelRefused
from adacomp.device_farm.emulator import predict_model, summarize
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.profiles import DeviceProfile, load_profile
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError


class EmulatedDevice(Device):
    kind: ClassVar[str] = "emulated"
    is_real: ClassVar[bool] = False

    def __init__(self, name: str, profile: DeviceProfile | str, device_class: str | None = None) -> None:
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        super().__init__(name, device_class or self.profile.device_class)

    def runtime(self) -> str:
        return f"emulated onnxruntime-cpu (profile {self.profile.name})"

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
        )

    def health(self) -> Health:
        return Health(True, f"emulated from profile {self.profile.name}")

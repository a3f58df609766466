"""The host CPU, measured for real with onnxruntime in an isolated, pinned worker process.

Warm-up runs, then timed runs until the coefficient of variation drops below the target (or
the run/time limits hit); a run that stays noisier than `max_cv` is repeated, then refused.
Energy comes from Linux RAPL (powercap) when readable, else None; RAPL counts the whole CPU
package, so other load on the machine is included: the notes say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from adacomp.device_farm.devices._base import Device, DeviceError, Health, ModelRefused
from adacomp.device_farm.identity import host_identity
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings

WORKER = "adacomp.device_farm.host_worker"


class HostDevice(Device):
    kind = "host"

    def __init__(
        self,
        name: str = "host",
        device_class: str = "host",
        *,
        cores: tuple[int, ...] | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        super().__init__(name, device_class)
        self.cores = cores
        self.timeout_s = timeout_s

    def runtime(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider"

    def identity(self) -> str:
        return host_identity().describe()

    def health(self) -> Health:
        return Health(True, f"{self.runtime()}, cores {list(self.cores) if self.cores else 'any'}")

    def measure(self, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        return self._measured(model, settings, self._run(model, settings, profile_kernels=False))

    def measure_kernels(
        self, model: OnnxModel, settings: MeasureSettings, *, kernels: bool = True
    ) -> tuple[Measurement, float, dict[str, float]]:
        """Calibration's data: the measurement, the 10th percentile of its timed runs (the speed
        of an undisturbed core), and, when `kernels`, each kernel's (node of ORT's optimised
        graph) 10th-percentile ms as ORT's profiler times it in a second session of the process."""
        result = self._run(model, settings, profile_kernels=kernels)
        kernel_ms = {str(name): float(ms) for name, ms in result.get("kernel_ms", {}).items()}
        return self._measured(model, settings, result), float(result["low_ms"]), kernel_ms

    def _run(self, model: OnnxModel, settings: MeasureSettings, *, profile_kernels: bool) -> dict[str, Any]:
        model.proto()  # refuse non-ONNX before starting a process
        cores = settings.cores if settings.cores is not None else self.cores
        payload = {
            **settings.model_dump(),
            "cores": list(cores) if cores else None,
            "profile_kernels": profile_kernels,
        }
        return run_worker(model.data, payload, self.timeout_s, self.name)

    def _measured(self, model: OnnxModel, settings: MeasureSettings, result: dict[str, Any]) -> Measurement:
        samples = result["samples_ms"]
        cv = result["cv"]
        if cv > settings.max_cv:
            raise DeviceError(
                f"device {self.name!r}: timing too noisy (robust cv {cv:.1%} > max_cv {settings.max_cv:.0%} "
                f"after {result['attempts']} attempts); is something else running on cores {result['cores']}?"
            )
        latency = LatencyStats.from_samples(samples)
        energy = None
        notes = [f"cores {result['cores']}", f"{result['attempts']} attempt(s)"]
        if result.get("session_config"):  # what the artifact asked the session to be opened with
            notes.append(
                "session " + ",".join(f"{k}={v}" for k, v in sorted(result["session_config"].items()))
            )
        if result["runs_per_sample"] > 1:
            notes.append(f"each sample is the mean of {result['runs_per_sample']} runs")
        if result["energy_uj"] is not None:
            inferences = len(samples) * result["runs_per_sample"]
            energy = result["energy_uj"] / 1000 / inferences
            notes.append(f"energy from RAPL {','.join(result['rapl_domains'])} (whole package)")
        else:
            notes.append("energy unknown: RAPL not readable")
        return Measurement(
            device=self.name,
            device_class=self.device_class,
            runtime=(
                f"onnxruntime {result['onnxruntime']} CPUExecutionProvider, "
                f"{settings.intra_op_threads} thread(s)"
            ),
            source="measured",
            latency=latency,
            energy_mj=energy,
            peak_memory_mb=None if result["peak_memory_mb"] is None else round(result["peak_memory_mb"], 3),
            storage_bytes=model.size,
            model_hash=model.sha256,
            settings=settings.key(),
            notes="; ".join(notes),
            identity=self.identity(),
        )


def run_worker(model: bytes, settings: dict[str, Any], timeout_s: float, device: str) -> dict[str, Any]:
    """Run the timing worker; every failure becomes a one-line DeviceError."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", WORKER, json.dumps(settings)],
            input=model,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeviceError(f"device {device!r}: measurement timed out after {timeout_s:g} s") from None
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if completed.returncode != 0 or "samples_ms" not in result:
        reason = (
            result.get("error")
            or (completed.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        )
        if result.get("model_refused") is True:
            raise ModelRefused(f"device {device!r}: cannot run this model: {reason}")
        raise DeviceError(f"device {device!r}: measurement failed: {reason}")
    return result

"""What an emulated device predicts for a model: the one entry point over kernels, roofline and learned model.

The graph priced is the one the profile names (`DeviceProfile.kernel_graph`: ONNX Runtime's
optimised graph, or the portable replay), analysed once per model hash (``kernels.py``). A
profile with a learned kernel model (``kernel_model.py``) takes its latency from it; energy and
peak memory stay the roofline's (power x latency + DRAM energy per byte moved).
"""

from __future__ import annotations

from dataclasses import replace

from adacomp.device_farm.cost_model import Prediction, predict
from adacomp.device_farm.graph import GraphSummary
from adacomp.device_farm.kernel_model import load_kernel_model
from adacomp.device_farm.kernels import KernelGraph, has_fp16, runtime_summary
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.profiles import DeviceProfile


def kernel_graph_for(model: OnnxModel, profile: DeviceProfile) -> KernelGraph:
    """The profile's graph, except fp16 models on a device with fp16 kernels: ORT on x86 wraps
    their nodes in Casts that such a device does not run, so the replay prices them."""
    if profile.kernel_graph != "replay" and profile.has_kernels("fp16") and has_fp16(model):
        return "replay"
    return profile.kernel_graph


def summarize(model: OnnxModel, profile: DeviceProfile, batch_size: int = 1) -> GraphSummary:
    return runtime_summary(model, kernel_graph_for(model, profile), batch_size)


def predict_summary(summary: GraphSummary, profile: DeviceProfile, threads: int = 1) -> Prediction:
    roofline = predict(summary, profile, threads=threads)
    if profile.kernel_model is None:
        return roofline
    learned = load_kernel_model(profile.kernel_model)
    ops = summary.executed
    kernel_ms = learned.scaled(ops, learned.kernel_ms(ops, profile, threads))
    latency_ms = float(kernel_ms.sum()) + learned.scales.run_ms
    energy_mj = profile.power_w(threads) * latency_ms + profile.dram_pj_per_byte * roofline.bytes_moved * 1e-9
    op_times = tuple(replace(op, total_ms=float(ms)) for op, ms in zip(roofline.ops, kernel_ms, strict=True))
    return replace(roofline, latency_ms=latency_ms, energy_mj=energy_mj, ops=op_times)


def predict_model(
    model: OnnxModel, profile: DeviceProfile, *, threads: int = 1, batch_size: int = 1
) -> Prediction:
    """Latency, energy and peak memory of one inference of `model` on `profile`."""
    return predict_summary(summarize(model, profile, batch_size), profile, threads)

"""What an emulated device predicts for a model: the one entry point over kernels, roofline and learned model.

The graph priced is the one the profile names (`DeviceProfile.kernel_graph`: ONNX Runtime's
optimised graph, or the portable replay), analysed once per model hash (``kernels.py``). A
profile with a learned kernel model (``kernel_model.py``) takes its latency from it; energy and
peak memory stay the roofline's (power x latency + DRAM energy per byte moved).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

from adacomp.device_farm.cost_model import Prediction, predict
from adacomp.device_farm.graph import GraphSummary
from adacomp.device_farm.kernel_model import load_kernel_model
from adacomp.device_farm.kernels import has_fp16, runtime_summary
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.profiles import DeviceProfile, KernelGraph


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


_CACHE_SIZE = 8192
_predictions: OrderedDict[tuple[str, str, int, int], Prediction] = OrderedDict()
_profile_keys: dict[int, tuple[DeviceProfile, str]] = {}
_lock = threading.Lock()


def _profile_key(profile: DeviceProfile) -> str:
    """The profile's full content (two profiles of one name may differ), computed once per object."""
    with _lock:
        found = _profile_keys.get(id(profile))
        if found is not None and found[0] is profile:
            return found[1]
    key = profile.model_dump_json()
    with _lock:
        if len(_profile_keys) > 256:
            _profile_keys.clear()
        _profile_keys[id(profile)] = (profile, key)
    return key


def clear_caches() -> None:
    """Forget every analysed graph and prediction (benchmarks timing new graphs)."""
    from adacomp.device_farm import kernels

    with _lock:
        _predictions.clear()
        _profile_keys.clear()
    kernels.clear_cache()


def predict_model(
    model: OnnxModel, profile: DeviceProfile, *, threads: int = 1, batch_size: int = 1
) -> Prediction:
    """Latency, energy and peak memory of one inference of `model` on `profile` (cached: a
    search asks the same device about the same model many times)."""
    key = (model.sha256, _profile_key(profile), threads, batch_size)
    with _lock:
        found = _predictions.get(key)
        if found is not None:
            _predictions.move_to_end(key)
            return found
    prediction = predict_summary(summarize(model, profile, batch_size), profile, threads)
    with _lock:
        _predictions[key] = prediction
        while len(_predictions) > _CACHE_SIZE:
            _predictions.popitem(last=False)
    return prediction

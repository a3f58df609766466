"""The emulated device: a profile's cost model answering like a device, with honest labels."""

from __future__ import annotations

import pytest

from adacomp.device_farm import Farm, MeasureSettings, OnnxModel
from adacomp.device_farm.config import EmulatedSpec
from adacomp.device_farm.cost_model import predict
from adacomp.device_farm.devices._base import DeviceError
from adacomp.device_farm.devices.emulated import EmulatedDevice
from adacomp.device_farm.farm import build_device
from adacomp.device_farm.kernels import runtime_summary
from adacomp.device_farm.profiles import builtin_profile_names, load_profile
from tests.helpers.onnx_exports import data_dependent_conv, exported


@pytest.mark.parametrize("name", builtin_profile_names())
def test_measure_returns_an_emulated_measurement(name: str, onnx_model: OnnxModel) -> None:
    device = EmulatedDevice(f"{name}-emu", name)
    settings = MeasureSettings()
    measurement = device.measure(onnx_model, settings)
    profile = load_profile(name)
    # Priced over the graph ONNX Runtime runs at the profile's level (tests/device_farm/test_kernels.py).
    expected = predict(runtime_summary(onnx_model, profile.kernel_graph), profile)
    assert measurement.source == "emulated"
    assert measurement.device == f"{name}-emu"
    assert measurement.device_class == load_profile(name).device_class
    assert measurement.runtime == f"emulated onnxruntime-cpu (profile {name})" == device.runtime()
    assert measurement.latency.median_ms == pytest.approx(expected.latency_ms)
    assert measurement.latency.runs == 0 and measurement.latency.std_ms == 0.0
    assert measurement.energy_mj == pytest.approx(expected.energy_mj)
    assert measurement.peak_memory_mb == pytest.approx(expected.peak_memory_mb)
    assert measurement.storage_bytes == onnx_model.size
    assert measurement.model_hash == onnx_model.sha256
    assert measurement.settings == settings.key()


def test_kind_class_and_health(onnx_model: OnnxModel) -> None:
    device = EmulatedDevice("phone", load_profile("pixel4"), device_class="pixel4-family")
    assert device.kind == "emulated" and device.is_real is False
    assert device.device_class == "pixel4-family"
    assert device.health().ok
    assert device.measure(onnx_model, MeasureSettings()).device_class == "pixel4-family"


def test_settings_batch_and_threads_are_used(onnx_model: OnnxModel) -> None:
    device = EmulatedDevice("pixel4", "pixel4")
    one = device.measure(onnx_model, MeasureSettings()).latency.median_ms
    batch = device.measure(onnx_model, MeasureSettings(batch_size=8)).latency.median_ms
    threads = device.measure(onnx_model, MeasureSettings(intra_op_threads=4)).latency.median_ms
    assert batch > one > threads
    assert device.measure(onnx_model, MeasureSettings()).latency.median_ms == one  # deterministic


def test_pruned_model_is_no_faster_and_says_why() -> None:
    device = EmulatedDevice("pixel4", "pixel4")
    dense = device.measure(OnnxModel(exported("cnn")), MeasureSettings())
    pruned = device.measure(OnnxModel(exported("cnn:pruned")), MeasureSettings())
    assert pruned.latency.median_ms == pytest.approx(dense.latency.median_ms)
    assert "sparsity" in pruned.notes and "sparsity" not in dense.notes


def test_unanalysable_graph_is_a_device_error_naming_the_node() -> None:
    model = OnnxModel(data_dependent_conv().SerializeToString(), "dynamic.onnx")
    with pytest.raises(DeviceError, match=r"dynamic\.onnx.*conv0"):
        EmulatedDevice("pixel4", "pixel4").measure(model, MeasureSettings())


def test_invalid_onnx_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="not an ONNX model"):
        EmulatedDevice("pixel4", "pixel4").measure(OnnxModel(b"garbage", "x.onnx"), MeasureSettings())


def test_model_larger_than_the_device_memory_is_refused(onnx_model: OnnxModel) -> None:
    tiny = load_profile("snapdragon_wear4100").model_copy(update={"memory_mb": 1.0})
    with pytest.raises(DeviceError, match="MiB"):
        EmulatedDevice("watch", tiny).measure(onnx_model, MeasureSettings())


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown device profile"):
        EmulatedDevice("x", "pixel9")


def test_farm_builds_and_measures_emulated_devices(onnx_model: OnnxModel) -> None:
    device = build_device(EmulatedSpec(name="pi", kind="emulated", profile="raspberrypi4", device_class="pi"))
    assert isinstance(device, EmulatedDevice) and device.device_class == "pi"
    farm = Farm(devices=[device])
    measurement = farm.measure(onnx_model, "pi")
    assert measurement.source == "emulated" and measurement.device == "pi"

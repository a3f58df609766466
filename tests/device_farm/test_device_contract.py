"""The contract every device kind keeps, run over all four kinds.

Every kind returns a valid Measurement for a real ONNX model (hash, storage, source, sane
statistics) and, when it fails, raises DeviceError (never anything else) and the farm's lease
is released. A model the device cannot run is `ModelRefused`: it fails alone, and the device
takes the next model at once (no retry, no quarantine). The adb kind runs against a fake adb executable (no phone is attached here); the
agent kind against a real agent process on loopback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adacomp.device_farm import (
    Device,
    DeviceError,
    Farm,
    FarmConfig,
    MeasurementStore,
    MeasureSettings,
    OnnxModel,
)
from adacomp.device_farm.devices._base import ModelRefused
from adacomp.device_farm.devices.agent import AgentDevice
from adacomp.device_farm.devices.host import HostDevice
from tests.helpers.agent_process import TOKEN, Agent
from tests.helpers.fake_adb import broken_adb_device, working_adb_device
from tests.helpers.onnx_exports import mismatched_matmul

QUICK = MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10)


def _emulated(tmp: Path) -> tuple[Device, Callable[[], Device]]:
    from adacomp.device_farm.devices.emulated import EmulatedDevice

    return EmulatedDevice("pixel4", "pixel4"), lambda: EmulatedDevice("pixel4", "pixel4")


def _host(tmp: Path) -> tuple[Device, Callable[[], Device]]:
    return HostDevice(), lambda: HostDevice(timeout_s=0.01)


def _adb(tmp: Path) -> tuple[Device, Callable[[], Device]]:
    return working_adb_device(tmp), lambda: broken_adb_device(tmp)


@pytest.fixture(params=["emulated", "host", "agent", "adb"])
def kind(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Device, Callable[[], Device] | None]]:
    if request.param == "agent":
        agent = Agent(tmp_path)
        try:
            yield (
                AgentDevice("pi", "rpi4", url=agent.url, token=TOKEN),
                lambda: AgentDevice("pi", "rpi4", url="http://127.0.0.1:9", token=TOKEN, timeout_s=2),
            )
        finally:
            agent.stop()
        return
    yield {"emulated": _emulated, "host": _host, "adb": _adb}[request.param](tmp_path)


def test_returns_a_valid_measurement(kind: tuple[Device, object], onnx_model: OnnxModel) -> None:
    device, _ = kind
    m = device.measure(onnx_model, QUICK)
    assert m.model_hash == onnx_model.sha256
    assert m.storage_bytes == onnx_model.size
    assert m.source == ("emulated" if device.kind == "emulated" else "measured")
    assert m.device == device.name and m.device_class == device.device_class
    lat = m.latency
    assert 0 < lat.median_ms <= lat.p90_ms and lat.mean_ms > 0 and lat.std_ms >= 0
    assert all(math.isfinite(x) for x in (lat.median_ms, lat.p90_ms, lat.mean_ms, lat.std_ms))
    assert m.energy_mj is None or m.energy_mj > 0
    assert m.peak_memory_mb is None or m.peak_memory_mb >= 0
    assert device.health().ok


def test_failure_is_a_device_error_and_the_lease_is_released(
    kind: tuple[Device, Callable[[], Device] | None], onnx_model: OnnxModel
) -> None:
    device, make_broken = kind
    if device.kind == "emulated":
        pytest.skip("an emulated device has no failure mode but bad input (tested in test_emulated)")
    assert make_broken is not None
    broken = make_broken()
    farm = Farm(FarmConfig(devices=(), retries=1, quarantine_s=5, fallback_to_class=False), devices=[broken])
    with pytest.raises(DeviceError):
        farm.measure(onnx_model, broken.name, QUICK)
    assert not farm._leases[broken.name].held


def test_a_model_the_device_cannot_run_fails_alone(
    kind: tuple[Device, object], onnx_model: OnnxModel, tmp_path: Path
) -> None:
    device, _ = kind
    if device.kind == "adb":
        pytest.skip("the fake adb (no phone here) runs no model: a phone's own refusal is not seen")
    store = MeasurementStore(tmp_path / "store")
    farm = Farm(FarmConfig(devices=(), retries=2, quarantine_s=60), store=store, devices=[device])
    refused = OnnxModel(mismatched_matmul().SerializeToString(), "mismatched.onnx")
    with pytest.raises(ModelRefused, match="MatMul"):
        farm.measure(refused, device.name, QUICK)
    assert farm.quarantined_for(device.name) == 0
    failures = [r for r in store.rows() if r["status"] == "failed"]
    assert [r["model_hash"] for r in failures] == [refused.sha256]  # recorded once, never retried
    assert farm.measure(onnx_model, device.name, QUICK).model_hash == onnx_model.sha256

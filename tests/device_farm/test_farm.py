"""The farm around real devices: store hits, retries, quarantine, class fallback, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from adacomp.device_farm import DeviceError, Farm, FarmConfig, MeasurementStore, MeasureSettings, OnnxModel
from adacomp.device_farm.config import HostSpec, load_farm_config
from adacomp.device_farm.devices.host import HostDevice
from adacomp.errors import AdacompError

QUICK = MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10)
SLOW = MeasureSettings(warmup_runs=0, min_runs=100_000, max_runs=100_000, max_seconds=60)


def _config(**policy: object) -> FarmConfig:
    specs = (
        HostSpec(name="a", kind="host", device_class="cpu"),
        HostSpec(name="b", kind="host", device_class="cpu"),
    )
    return FarmConfig(devices=specs, **policy)  # type: ignore[arg-type]


def test_identical_request_is_served_from_the_store(tmp_path: Path, onnx_model: OnnxModel) -> None:
    farm = Farm(_config(), store=MeasurementStore(tmp_path))
    first = farm.measure(onnx_model, "a", QUICK)
    assert farm.measure(onnx_model, "a", QUICK) == first
    fresh = farm.measure(onnx_model, "a", QUICK, fresh=True)
    assert fresh.timestamp > first.timestamp
    assert len(MeasurementStore(tmp_path).rows()) == 2


def test_failing_device_is_retried_then_quarantined_then_replaced(
    tmp_path: Path, onnx_model: OnnxModel
) -> None:
    # Device "a" really times out (its worker gets 10 ms); "b", of the same class, is healthy.
    store = MeasurementStore(tmp_path)
    devices = [HostDevice("a", "cpu", timeout_s=0.01), HostDevice("b", "cpu")]
    farm = Farm(_config(quarantine_s=60), store=store, devices=devices)
    m = farm.measure(onnx_model, "a", QUICK)
    assert m.device == "b"
    assert farm.quarantined_for("a") > 50
    failures = [r for r in store.rows() if r["status"] == "failed"]
    assert [r["device"] for r in failures] == ["a", "a"]  # tried, retried once, both recorded
    with pytest.raises(DeviceError, match="quarantined for another"):
        farm._measure_on("a", onnx_model, QUICK)
    assert any(s.quarantined_for_s > 0 for s in farm.status() if s.name == "a")


def test_without_fallback_the_caller_gets_a_clear_error(onnx_model: OnnxModel) -> None:
    devices = [HostDevice("a", "cpu", timeout_s=0.01), HostDevice("b", "cpu")]
    farm = Farm(_config(fallback_to_class=False, quarantine_s=30), devices=devices)
    with pytest.raises(DeviceError, match=r"timed out .*failed 2 times; quarantined for 30 s"):
        farm.measure(onnx_model, "a", QUICK)


def test_unknown_device_names_the_known_ones(onnx_model: OnnxModel) -> None:
    with pytest.raises(DeviceError, match="unknown device 'zz'; devices in the farm: a, b"):
        Farm(_config()).measure(onnx_model, "zz")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: [", "not valid YAML"),
        ("- 1", "expected a mapping"),
        ("devices: [{name: x, kind: tpu, class: c}]", "devices.0"),
        ("devices: [{name: x, kind: agent, class: c, url: 'ftp://x', token_file: t}]", "devices.0.agent.url"),
        ("devices: [{name: x, kind: host}, {name: x, kind: host}]", "device name 'x' is used twice"),
        ("devices: []\nqueue_size: -1", "queue_size"),
        ("devices: []\nbogus: 1", "bogus"),
    ],
)
def test_bad_farm_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    with pytest.raises(AdacompError, match=message) as info:
        load_farm_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_config_store_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("devices: [{name: h, kind: host}]\nstore: m\n")
    assert load_farm_config(path).store == tmp_path / "m"

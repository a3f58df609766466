"""AdbDevice against a FAKE adb: no phone is attached to the machines that run these tests.

`fake_adb` (written into tmp_path) stands in for both the adb binary and the phone: it records its
argv, answers `get-state` from a state file, copies files for `push`, and runs `shell` commands in
the local POSIX sh -- with `remote_dir` and the fuel-gauge directory pointed into tmp_path, so the
real measure script (mkdir, ls, chmod, mv, the sampling loop) runs for real. The benchmark binary is
a small sh script that prints one of the REAL onnxruntime_perf_test outputs in data/, and can raise
the fake battery current while it "runs". What this cannot show: mksh/toybox quirks, a real gauge.
"""

from __future__ import annotations

import shlex
import shutil
import time
from pathlib import Path

import pytest
import torch
from onnx import TensorProto, helper

from adacomp.device_farm import DeviceError, Farm, FarmConfig, MeasureSettings, OnnxModel
from adacomp.device_farm.devices._base import ModelRefused
from adacomp.device_farm.devices.adb import FuelGauge, GaugeSample, energy_per_inference
from adacomp.search_spaces import export_onnx
from tests.helpers.fake_adb import SERIAL, Phone
from tests.helpers.perf_test_samples import DATA

ONE_PASS = MeasureSettings(min_runs=5, max_runs=5, intra_op_threads=2)


@pytest.fixture
def phone(tmp_path: Path) -> Phone:
    return Phone(tmp_path / "phone")


@pytest.fixture(scope="module")
def linear() -> OnnxModel:
    torch.manual_seed(0)
    return OnnxModel(
        export_onnx(torch.nn.Sequential(torch.nn.Linear(8, 4)), torch.randn(2, 8)), "linear.onnx"
    )


def relu_model(batch: str = "batch") -> OnnxModel:
    """A second real model, built directly (an export takes seconds): Relu over [batch, 8]."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return OnnxModel(proto.SerializeToString(), "relu.onnx")


def test_a_measurement_end_to_end(phone: Phone, linear: OnnxModel) -> None:
    m = phone.device(phone.benchmark()).measure(linear, ONE_PASS)

    assert m.source == "measured" and m.device == "phone" and m.device_class == "pixel"
    assert m.storage_bytes == linear.size and m.model_hash == linear.sha256
    # Latency from the per-run result file (real runs), matching perf_test's own P50/P90.
    assert m.latency.runs == 5
    assert m.latency.median_ms == pytest.approx(99.5086)
    assert m.latency.p90_ms == pytest.approx(101.519)
    assert m.latency.mean_ms == pytest.approx(98.962)
    assert "per-run" in m.notes
    assert m.peak_memory_mb == pytest.approx(271122432 / 2**20, abs=1e-3)
    assert m.runtime.startswith("onnxruntime_perf_test ") and m.runtime.endswith(
        "(android, cpu EP, 2 threads)"
    )
    # (2.8 W running - 0.8 W idle) x 0.494854 s (perf_test's timed loop) / 5 inferences
    assert m.energy_mj == pytest.approx(2.0 * 0.494854 * 1000 / 5)
    assert "battery fuel gauge" in m.notes

    calls = phone.calls()
    assert all(call[:2] == ["-s", SERIAL] for call in calls)
    pushes = [call for call in calls if call[2] == "push"]
    assert len(pushes) == 3  # model, binary, script
    remote = str(phone.remote_dir)
    model_path = f"{remote}/models/{linear.sha256}.onnx"
    run = next(
        cmd for cmd in phone.shell_commands() if "onnxruntime_perf_test" in cmd and cmd.startswith("sh ")
    )
    argv = shlex.split(run)  # what the phone's shell sees
    assert argv[argv.index(model_path) + 1] == "result.csv"
    # The exporter leaves the batch dimension symbolic ("batch"): -f pins it to settings.batch_size.
    flags = ["-e", "cpu", "-m", "times", "-r", "5", "-x", "2", "-I", "-s", "-f", "batch:1"]
    assert argv[-14:] == [*flags, model_path, "result.csv"]
    assert shlex.quote(model_path) in run and "'" in run  # the path with a space arrives quoted
    binary_remote = next(a for a in argv if a.endswith("/onnxruntime_perf_test"))
    assert (Path(binary_remote).stat().st_mode & 0o111) != 0  # chmod +x on the phone


@pytest.mark.skipif(shutil.which("mksh") is None, reason="mksh (Android's shell) not installed")
def test_the_measure_script_runs_under_mksh(phone: Phone, linear: OnnxModel) -> None:
    phone.set_state("device", shell="mksh")
    m = phone.device(phone.benchmark()).measure(linear, ONE_PASS)
    assert m.latency.runs == 5 and m.energy_mj == pytest.approx(2.0 * 0.494854 * 1000 / 5)


def test_pushes_are_skipped_when_the_phone_has_the_files(
    phone: Phone, linear: OnnxModel, tmp_path: Path
) -> None:
    device = phone.device(phone.benchmark(seconds=0.1), energy=False)
    device.measure(linear, ONE_PASS)
    assert sum(call[2] == "push" for call in phone.calls()) == 3
    phone.log.unlink()
    m = device.measure(linear, ONE_PASS)
    assert not any(call[2] == "push" for call in phone.calls())
    assert m.energy_mj is None and "disabled" in m.notes

    other = relu_model()
    phone.log.unlink()
    device.measure(other, ONE_PASS)
    pushed = [call[4] for call in phone.calls() if call[2] == "push"]
    assert pushed == [f"{phone.remote_dir}/models/{other.sha256}.onnx.part"]  # only the new model


def test_energy_is_none_when_the_phone_has_no_fuel_gauge(phone: Phone, linear: OnnxModel) -> None:
    device = phone.device(phone.benchmark(), energy=FuelGauge(path=str(phone.root / "nope"), interval_s=0.1))
    m = device.measure(linear, ONE_PASS)
    assert m.energy_mj is None
    assert "current_now, voltage_now not readable" in m.notes


def test_energy_is_none_while_the_battery_charges(phone: Phone, linear: OnnxModel) -> None:
    phone.set_battery(current_ua=300_000, voltage_uv=4_300_000, status="Charging")
    m = phone.device(phone.benchmark(busy_ua=150_000)).measure(linear, ONE_PASS)
    assert m.energy_mj is None
    assert "'Charging'" in m.notes and "net of the" in m.notes


def test_energy_arithmetic() -> None:
    idle = [GaugeSample(0.0, -200_000, 4_000_000), GaugeSample(0.1, -200_000, 4_000_000)]
    busy = [GaugeSample(0.2 + i / 10, -700_000, 4_000_000) for i in range(4)]
    energy, note = energy_per_inference(idle, busy, "Discharging", run_time_s=0.5, inferences=5)
    assert energy == pytest.approx((2.8 - 0.8) * 0.5 * 1000 / 5)  # 200 mJ per inference
    assert "2.800 W running - 0.800 W idle" in note
    # A gauge that reports mA and mV (some vendors) gives the same answer.
    idle_ma = [GaugeSample(s.uptime_s, s.current_ua / 1000, s.voltage_uv / 1000) for s in idle]
    busy_ma = [GaugeSample(s.uptime_s, s.current_ua / 1000, s.voltage_uv / 1000) for s in busy]
    energy_ma, note_ma = energy_per_inference(idle_ma, busy_ma, "Discharging", 0.5, 5)
    assert energy_ma == pytest.approx(200.0) and "read as mA" in note_ma
    # Refusals: a charger in the loop, too few samples, a sign change, no rise over idle.
    assert energy_per_inference(idle, busy, "Full", 0.5, 5)[0] is None
    assert energy_per_inference(idle, busy[:2], "Discharging", 0.5, 5)[0] is None
    flipped = [*busy[:3], GaugeSample(1.0, 100_000, 4_000_000)]
    assert "changed sign" in energy_per_inference(idle, flipped, "Discharging", 0.5, 5)[1]
    assert energy_per_inference(busy, idle * 2, "Discharging", 0.5, 5)[0] is None


def test_a_timeout_is_a_device_error_and_stops_the_benchmark(phone: Phone, linear: OnnxModel) -> None:
    device = phone.device(phone.benchmark(seconds=30), timeout_s=2.0)
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"device 'phone' \(adb FAKE0123\): adb shell timed out after 2 s"):
        device.measure(linear, ONE_PASS)
    assert time.monotonic() - start < 15
    assert any("bench.pid" in cmd and "kill" in cmd for cmd in phone.shell_commands())


def test_an_unauthorized_phone_is_unhealthy(phone: Phone, linear: OnnxModel) -> None:
    phone.set_state("unauthorized")
    device = phone.device(phone.benchmark())
    health = device.health()
    assert not health.ok
    assert (
        "error: device unauthorized." in health.detail and "accept the USB debugging prompt" in health.detail
    )
    with pytest.raises(DeviceError, match="unauthorized"):
        device.measure(linear, ONE_PASS)


@pytest.mark.parametrize(
    ("state", "serial", "expected"),
    [
        ("device", SERIAL, None),
        ("offline", SERIAL, "error: device offline (replug"),
        ("device", "OTHER", "adb: device 'OTHER' not found (not attached"),
    ],
)
def test_health_follows_adb_get_state(phone: Phone, state: str, serial: str, expected: str | None) -> None:
    phone.set_state(state)
    device = phone.device(phone.benchmark())
    device.serial = serial
    health = device.health()
    assert health.ok is (expected is None)
    if expected is None:
        assert "device; onnxruntime_perf_test" in health.detail
    else:
        assert expected in health.detail and f"'phone' (adb {serial})" in health.detail


def test_health_needs_the_benchmark_binary(phone: Phone) -> None:
    health = phone.device(phone.root / "missing_perf_test").health()
    assert not health.ok and "does not exist" in health.detail


def test_a_failing_benchmark_reports_its_last_stderr_line(phone: Phone, linear: OnnxModel) -> None:
    # The error text is made up for the test; perf_test prints ORT's exception message last.
    failing = phone.benchmark(
        exit_code=1, stderr="loading model\nLoad model failed: bad magic", per_run_s=None
    )
    with pytest.raises(DeviceError, match=r"perf_test exited with 1: Load model failed: bad magic$"):
        phone.device(failing).measure(linear, ONE_PASS)


def test_a_model_onnx_runtime_refuses_on_the_phone_fails_alone(phone: Phone, linear: OnnxModel) -> None:
    # The text is made up for the test, in ONNX Runtime's own error format (status prefix, code).
    refusing = phone.benchmark(
        exit_code=255,
        stderr="[ONNXRuntimeError] : 10 : INVALID_GRAPH : Load model from m.onnx failed: mismatched dims",
        per_run_s=None,
    )
    farm = Farm(FarmConfig(devices=(), retries=2, quarantine_s=60), devices=[phone.device(refusing)])
    with pytest.raises(ModelRefused, match="INVALID_GRAPH"):
        farm.measure(linear, phone.device(refusing).name, ONE_PASS)
    assert farm.quarantined_for(phone.device(refusing).name) == 0


def test_the_battery_is_reset_after_an_unplug_even_on_failure(phone: Phone, linear: OnnxModel) -> None:
    gauge = FuelGauge(path=str(phone.gauge), interval_s=0.1, idle_s=0.1, unplug=True)
    with pytest.raises(DeviceError, match="exited with 2"):
        phone.device(phone.benchmark(exit_code=2, stderr="boom"), energy=gauge).measure(linear, ONE_PASS)
    battery = [cmd for cmd in phone.shell_commands() if cmd.startswith("dumpsys battery")]
    assert battery == ["dumpsys battery unplug", "dumpsys battery reset"]

    phone.log.unlink()
    phone.device(phone.benchmark(), energy=gauge).measure(linear, ONE_PASS)
    commands = phone.shell_commands()
    assert commands[0].startswith("mkdir -p") and commands[-1] == "dumpsys battery reset"
    assert commands.index("dumpsys battery unplug") < len(commands) - 2


def test_a_missing_adb_is_a_device_error(phone: Phone, linear: OnnxModel) -> None:
    device = phone.device(phone.benchmark())
    device.adb = str(phone.root / "no-such-adb")
    with pytest.raises(DeviceError, match=r"adb executable .* not found"):
        device.measure(linear, ONE_PASS)
    assert not device.health().ok


def test_without_a_result_file_std_is_estimated_from_percentiles(phone: Phone, linear: OnnxModel) -> None:
    m = phone.device(phone.benchmark(per_run_s=None), energy=False).measure(linear, ONE_PASS)
    assert m.latency.median_ms == pytest.approx(99.5086) and m.latency.mean_ms == 98.961997
    assert m.latency.std_ms == pytest.approx((101.519 - 99.5086) / 1.2816)
    assert "std estimated as (P90-P50)/1.2816" in m.notes


def test_an_old_perf_test_without_percentiles_is_refused(phone: Phone, linear: OnnxModel) -> None:
    old = phone.benchmark("perf_test_acl_1_3_1.txt", per_run_s=None)
    with pytest.raises(DeviceError, match="no P50/P90"):
        phone.device(old, energy=False).measure(linear, ONE_PASS)


def test_noisy_timing_gets_a_second_longer_pass(phone: Phone, linear: OnnxModel) -> None:
    settings = MeasureSettings(min_runs=5, max_runs=40, target_cv=1e-6, max_cv=1.0)
    m = phone.device(phone.benchmark(seconds=0.1), energy=False).measure(linear, settings)
    runs = [shlex.split(cmd) for cmd in phone.shell_commands() if cmd.startswith("sh ")]
    assert [argv[argv.index("-r") + 1] for argv in runs] == ["5", "40"]
    assert "second pass of 40 runs" in m.notes


def test_timing_noisier_than_max_cv_is_refused(phone: Phone, linear: OnnxModel) -> None:
    settings = MeasureSettings(min_runs=5, max_runs=5, max_cv=0.001)
    with pytest.raises(DeviceError, match="too noisy"):
        phone.device(phone.benchmark(seconds=0.1), energy=False).measure(linear, settings)


def test_symbolic_batch_and_pinned_cores_reach_perf_test(phone: Phone) -> None:
    model = relu_model("n")
    settings = MeasureSettings(
        min_runs=5, max_runs=5, batch_size=4, cores=(0,) if shutil.which("taskset") else None
    )
    m = phone.device(phone.benchmark(seconds=0.1), energy=False).measure(model, settings)
    argv = shlex.split(next(cmd for cmd in phone.shell_commands() if cmd.startswith("sh ")))
    assert argv[argv.index("-f") + 1] == "n:4"
    if settings.cores:
        assert argv[6] == "1" and "pinned to cores [0]" in m.notes  # taskset mask for core 0


def test_data_samples_name_their_source() -> None:
    for sample in DATA.glob("perf_test_*.txt"):
        header = sample.read_text().split("# ---\n", 1)[0]
        assert "https://github.com/" in header, sample.name

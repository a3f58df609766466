"""The analytic cost model: roofline arithmetic, precision rules, monotonicity, calibration fits."""

from __future__ import annotations

import builtins
import io
import math
from typing import Any, NoReturn

import pytest

from adacomp.device_farm.cost_model import (
    accuracy_report,
    fit_efficiency,
    flops_baseline_fit,
    kind_times,
    predict,
)
from adacomp.device_farm.graph import GraphSummary, OpKind
from adacomp.device_farm.profiles import DeviceProfile, builtin_profile_names, load_profile
from adacomp.errors import AdacompError
from tests.helpers.onnx_exports import summary


def _without(profile: DeviceProfile, precision: str) -> DeviceProfile:
    """The same device as if its runtime had no kernels for `precision`."""
    throughput = {p: k for p, k in profile.throughput_gmacs.items() if p != precision}
    return profile.model_copy(update={"throughput_gmacs": throughput})


@pytest.fixture(scope="module")
def pixel4() -> DeviceProfile:
    return load_profile("pixel4")


def test_breakdown_is_a_roofline_plus_overhead(pixel4: DeviceProfile) -> None:
    prediction = predict(summary("cnn"), pixel4)
    assert len(prediction.ops) == len(summary("cnn").executed)
    for op in prediction.ops:
        assert op.total_ms == pytest.approx(max(op.compute_ms, op.memory_ms) + op.overhead_ms)
        assert op.overhead_ms == pytest.approx(pixel4.op_overhead_us / 1e3)
    assert prediction.latency_ms == pytest.approx(sum(op.total_ms for op in prediction.ops))
    conv = next(op for op in prediction.ops if op.kind is OpKind.CONV)
    conv_cost = next(op for op in summary("cnn").executed if op.name == conv.name)
    assert conv.compute_ms == pytest.approx(conv_cost.macs / (pixel4.gmacs("fp32", OpKind.CONV) * 1e9) * 1e3)


def test_energy_and_memory_follow_their_formulas(pixel4: DeviceProfile) -> None:
    s = summary("cnn")
    prediction = predict(s, pixel4)
    expected_mj = (
        pixel4.active_power_w * prediction.latency_ms
        + pixel4.dram_pj_per_byte * prediction.bytes_moved * 1e-9
    )
    assert prediction.energy_mj == pytest.approx(expected_mj)
    expected_mb = (s.weight_bytes + s.peak_activation_bytes) / 2**20 + pixel4.runtime_arena_mb
    assert prediction.peak_memory_mb == pytest.approx(expected_mb)


def test_int8_is_faster_only_with_int8_kernels(pixel4: DeviceProfile) -> None:
    fp32, int8 = summary("cnn32"), summary("cnn32:int8")
    assert predict(int8, pixel4).latency_ms < predict(fp32, pixel4).latency_ms
    no_int8 = _without(pixel4, "int8")
    assert predict(int8, no_int8).latency_ms >= predict(fp32, no_int8).latency_ms
    # Without kernels the weights are dequantized at load: int8 saves no memory either.
    assert predict(int8, no_int8).peak_memory_mb > predict(int8, pixel4).peak_memory_mb


def test_fp16_is_faster_only_with_fp16_kernels(pixel4: DeviceProfile) -> None:
    fp32, fp16 = summary("cnn32"), summary("cnn32:fp16")
    assert pixel4.has_kernels("fp16")
    assert predict(fp16, pixel4).latency_ms < predict(fp32, pixel4).latency_ms
    pi = load_profile("raspberrypi4")
    assert not pi.has_kernels("fp16")
    assert predict(fp16, pi).latency_ms >= predict(fp32, pi).latency_ms
    assert predict(fp16, _without(pixel4, "fp16")).latency_ms >= predict(fp32, pixel4).latency_ms


@pytest.mark.parametrize("name", builtin_profile_names())
def test_magnitude_pruning_changes_no_latency(name: str) -> None:
    profile = load_profile(name)
    dense, pruned = predict(summary("cnn"), profile), predict(summary("cnn:pruned"), profile)
    assert summary("cnn:pruned").sparsity > 0.7
    assert pruned.latency_ms == pytest.approx(dense.latency_ms, rel=1e-12)
    assert pruned.energy_mj == pytest.approx(dense.energy_mj, rel=1e-12)


@pytest.mark.parametrize("name", builtin_profile_names())
def test_latency_is_monotone_in_width(name: str) -> None:
    profile = load_profile(name)
    family = [summary(f"cnn{width}") for width in (8, 16, 32)]
    assert [s.macs for s in family] == sorted(s.macs for s in family)
    latencies = [predict(s, profile).latency_ms for s in family]
    energies = [predict(s, profile).energy_mj for s in family]
    assert latencies == sorted(latencies) and len(set(latencies)) == 3
    assert energies == sorted(energies)


def test_batch_amortises_overhead(pixel4: DeviceProfile) -> None:
    one, eight = predict(summary("cnn"), pixel4), predict(summary("cnn", 8), pixel4)
    assert one.latency_ms < eight.latency_ms < 8 * one.latency_ms


def test_threads_speed_up_compute_up_to_the_core_count(pixel4: DeviceProfile) -> None:
    s = summary("cnn32")
    one, two = predict(s, pixel4).latency_ms, predict(s, pixel4, threads=2).latency_ms
    assert two < one
    assert predict(s, pixel4, threads=64).latency_ms == pytest.approx(
        predict(s, pixel4, threads=pixel4.cores).latency_ms
    )
    with pytest.raises(AdacompError, match="threads"):
        predict(s, pixel4, threads=0)


def test_faster_devices_predict_faster() -> None:
    s = summary("cnn32")
    order = ["snapdragon8gen2", "pixel4", "raspberrypi4", "snapdragon_wear4100"]
    latencies = [predict(s, load_profile(name)).latency_ms for name in order]
    assert latencies == sorted(latencies)


def test_efficiency_divides_the_roofline_time(pixel4: DeviceProfile) -> None:
    s = summary("cnn")
    slow = pixel4.model_copy(update={"efficiency": {OpKind.CONV: 0.5}})
    base, halved = predict(s, pixel4), predict(s, slow)
    for a, b in zip(base.ops, halved.ops, strict=True):
        factor = 2.0 if a.kind is OpKind.CONV else 1.0
        assert b.total_ms - b.overhead_ms == pytest.approx(factor * (a.total_ms - a.overhead_ms))


# --- calibration -----------------------------------------------------------------------------
FIT_MODELS = ("cnn", "cnn8", "cnn32", "cnn:int8", "cnn:fp16", "cnn:depthwise", "mlp")
TRUE_EFFICIENCY = {
    OpKind.CONV: 0.6,
    OpKind.DEPTHWISE_CONV: 0.35,
    OpKind.GEMM: 1.3,
    OpKind.POOL: 0.8,
    OpKind.RESHAPE: 0.5,
    OpKind.QUANTIZE: 0.7,
    OpKind.ELEMENTWISE: 0.9,
}


def _fit_summaries() -> list[GraphSummary]:
    return [summary(name, batch) for name in FIT_MODELS for batch in (1, 4, 16)]


def _synthetic_samples(profile: DeviceProfile) -> list[tuple[GraphSummary, float]]:
    truth = profile.model_copy(update={"efficiency": TRUE_EFFICIENCY, "op_overhead_us": 23.0})
    return [(s, predict(s, truth).latency_ms) for s in _fit_summaries()]


def test_fit_recovers_known_efficiencies(pixel4: DeviceProfile) -> None:
    samples = _synthetic_samples(pixel4)
    present = {kind for s, _ in samples for kind in kind_times(s, pixel4)[0]}
    fitted = fit_efficiency(samples, pixel4)
    for kind in present:
        assert fitted.efficiency_of(kind) == pytest.approx(TRUE_EFFICIENCY[kind], rel=1e-4), kind
    assert fitted.op_overhead_us == pytest.approx(23.0, rel=1e-4)
    assert fitted.name == pixel4.name and pixel4.efficiency == {}  # a new profile; the input is untouched
    for s, measured in samples:
        assert predict(s, fitted).latency_ms == pytest.approx(measured, rel=1e-6)


def test_fit_can_keep_the_overhead(pixel4: DeviceProfile) -> None:
    samples = [(s, ms) for s, ms in _synthetic_samples(pixel4)]
    fitted = fit_efficiency(samples, pixel4.model_copy(update={"op_overhead_us": 23.0}), fit_overhead=False)
    assert fitted.op_overhead_us == 23.0
    assert fitted.efficiency_of(OpKind.CONV) == pytest.approx(0.6, rel=1e-4)


def test_fitted_emulator_beats_the_flops_baseline(pixel4: DeviceProfile) -> None:
    samples = _synthetic_samples(pixel4)
    fit, check = samples[::2], samples[1::2]
    profile = fit_efficiency(fit, pixel4)
    a, b = flops_baseline_fit(fit)
    measured = [ms for _, ms in check]
    emulator = accuracy_report([predict(s, profile).latency_ms for s, _ in check], measured)
    baseline = accuracy_report([a * s.macs + b for s, _ in check], measured)
    assert emulator["within_10"] == 1.0
    assert emulator["mape"] < baseline["mape"]


def test_fit_refuses_bad_samples(pixel4: DeviceProfile) -> None:
    with pytest.raises(AdacompError, match="at least one"):
        fit_efficiency([], pixel4)
    with pytest.raises(AdacompError, match="positive"):
        fit_efficiency([(summary("cnn"), -1.0)], pixel4)


def test_flops_baseline_recovers_a_line() -> None:
    samples = [(s, 2e-6 * s.macs + 0.5) for s in _fit_summaries()]
    a, b = flops_baseline_fit(samples)
    assert a == pytest.approx(2e-6) and b == pytest.approx(0.5)
    assert flops_baseline_fit([(summary("cnn"), 3.0)]) == (0.0, 3.0)


def test_accuracy_report() -> None:
    report = accuracy_report([1.05, 2.5, 2.9, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert report["within_10"] == 0.5  # 5 % and 3.3 % off
    assert report["within_20"] == 0.5  # 25 % off twice
    assert report["kendall_tau"] == pytest.approx(1.0)  # same order
    assert report["mape"] == pytest.approx((0.05 + 0.25 + 0.1 / 3 + 0.25) / 4)
    assert math.isnan(accuracy_report([1.0], [1.0])["kendall_tau"])
    with pytest.raises(AdacompError):
        accuracy_report([1.0], [1.0, 2.0])
    with pytest.raises(AdacompError):
        accuracy_report([1.0], [0.0])


def test_cost_model_does_no_io(monkeypatch: pytest.MonkeyPatch, pixel4: DeviceProfile) -> None:
    samples = _synthetic_samples(pixel4)  # analysed and loaded before the door is shut

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"the cost model opened a file: {args!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    prediction = predict(samples[0][0], pixel4)
    assert prediction.latency_ms > 0
    fitted = fit_efficiency(samples, pixel4)
    flops_baseline_fit(samples)
    accuracy_report([predict(s, fitted).latency_ms for s, _ in samples], [ms for _, ms in samples])

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from adacomp.device_farm import DeviceError, MeasureSettings, OnnxModel
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.host_worker import energy_delta_uj
from adacomp.errors import AdacompError
from adacomp.search_spaces import CompressionPlan, Step, export_onnx

QUICK = MeasureSettings(warmup_runs=2, min_runs=10, max_runs=50, max_cv=10)


def test_host_measures_for_real(onnx_model: OnnxModel) -> None:
    m = HostDevice().measure(onnx_model, QUICK)
    assert m.source == "measured" and m.device == "host"
    assert m.latency.runs >= 10 and 0 < m.latency.median_ms <= m.latency.p90_ms
    assert m.storage_bytes == onnx_model.size and m.model_hash == onnx_model.sha256
    assert m.peak_memory_mb is None or m.peak_memory_mb >= 0
    assert "onnxruntime" in m.runtime
    if m.energy_mj is None:
        assert "RAPL not readable" in m.notes


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux core pinning")
def test_host_opens_an_int8_weights_artifact_as_it_declares() -> None:
    """The worker reads the artifact's session config (weight-only int8 folds its dequantization
    only with ORT's QDQ fusion off) and the measurement's notes say what it used."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10)).eval()
    plan = CompressionPlan.from_mapping(
        {layer: [Step.of("quantize", precision="int8_weights")] for layer in ("0", "3")}
    )
    artifact = OnnxModel(export_onnx(model, torch.randn(2, 1, 8, 8), plan=plan), "int8w.onnx")
    m = HostDevice().measure(artifact, QUICK)
    assert m.latency.median_ms > 0
    assert "session session.disable_quant_qdq=1" in m.notes


def test_host_pins_to_the_configured_core(onnx_model: OnnxModel) -> None:
    core = max(os.sched_getaffinity(0))
    m = HostDevice(cores=(core,)).measure(onnx_model, QUICK)
    assert f"cores [{core}]" in m.notes


def test_noisy_runs_are_refused(onnx_model: OnnxModel) -> None:
    impossible = MeasureSettings(warmup_runs=0, min_runs=5, max_runs=5, max_cv=1e-9, repeats_when_noisy=1)
    with pytest.raises(DeviceError, match="too noisy"):
        HostDevice().measure(onnx_model, impossible)


def test_non_onnx_is_refused_before_any_work() -> None:
    with pytest.raises(AdacompError, match="not an ONNX model"):
        HostDevice().measure(OnnxModel(b"\x00garbage" * 10), QUICK)


def test_timeout_is_a_device_error() -> None:
    """100,000 runs of a model of a few million MACs (tens of seconds on any CPU) against a 1.5 s
    timeout: a fast machine ran the 10-microsecond tiny model's 100,000 runs in time."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.Flatten()
    ).eval()
    heavy = OnnxModel(export_onnx(model, torch.randn(2, 1, 8, 8)), "heavy.onnx")
    slow = MeasureSettings(warmup_runs=0, min_runs=100_000, max_runs=100_000, max_seconds=60)
    with pytest.raises(DeviceError, match="timed out"):
        HostDevice(timeout_s=1.5).measure(heavy, slow)


def test_rapl_counter_wraparound() -> None:
    assert energy_delta_uj([(100, 1000)], [(300, 1000)]) == 200
    assert energy_delta_uj([(900, 1000)], [(50, 1000)]) == 150


def test_noise_is_judged_on_the_median_that_is_reported() -> None:
    """A few runs preempted by another process (50x slower) leave the median, and so the robust
    cv, where they were; std / mean would call the same timing 100 %+ noisy and refuse it.
    Timings whose bulk is spread are still noisy."""
    from adacomp.device_farm.measurement import LatencyStats, robust_cv

    steady = [1.0 + 0.01 * (i % 5) for i in range(40)]
    preempted = [*steady[:37], 50.0, 50.0, 50.0]
    assert robust_cv(preempted) == pytest.approx(robust_cv(steady), abs=0.01) and robust_cv(steady) < 0.05
    assert LatencyStats.from_samples(preempted).cv > 1.0
    spread = [0.5 + 0.05 * i for i in range(40)]
    assert robust_cv(spread) > 0.3
    assert robust_cv([]) == 0.0 and robust_cv([0.0, 0.0]) == 0.0

"""Real onnxruntime_perf_test outputs (device_farm/data/) and result files: test_perf_output, test_adb."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent.parent / "device_farm" / "data"


def load_sample(name: str) -> str:
    """The verbatim output below the '# ---' line that ends the provenance header."""
    text = (DATA / name).read_text()
    return text.split("# ---\n", 1)[1]


# Per-run lines as PerformanceResult::DumpToFile writes them ("model,latency_s,peak,cpu,run",
# onnxruntime/test/perftest/performance_runner.cc). No real result file was found published, so these
# are CONSTRUCTED to agree with the real Android sample: same min, max, P50 (sorted[int(n*0.5)]),
# P90 and total (0.49481 s).
SME2_RUNS_S = [0.0995086, 0.0958204, 0.101519, 0.0984, 0.099562]


def result_file(values: list[float]) -> str:
    return "".join(f"models,{v},271122432,11,{i}\n" for i, v in enumerate(values))

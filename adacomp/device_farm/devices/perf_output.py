"""Parse what onnxruntime's `onnxruntime_perf_test` prints, and turn it into LatencyStats.

The formats come from onnxruntime/test/perftest/performance_runner.cc (summary) and
PerformanceResult::DumpToFile (statistics and the per-run result file); they changed over the years:

- averages: "Average inference time cost total: X ms" (recent), "Average inference time cost: X ms"
  (1.x), "Average time cost:X ms" (2019 README);
- percentiles, printed only with `-s` or without a result file: "P50 Latency: X s" (recent) or
  "P50 Latency is X sec" (old) -- always in seconds, unlike the average;
- the result file: one line per run, "model_name,latency,peak_working_set,cpu_usage,run_index",
  latency in seconds in recent versions (nanoseconds in a 2019 one, so units are checked against
  the printed total before the file is trusted).

The tool prints no standard deviation. With the per-run result file the statistics are computed
from the real samples; without it, std is estimated as (P90 - P50) / 1.2816 (the distance from the
median to the 90th percentile of a normal distribution), and the notes say so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adacomp.device_farm.measurement import LatencyStats
from adacomp.errors import AdacompError

# z-score of the 90th percentile of a standard normal distribution.
Z90 = 1.2816
PERCENTILES = ("min", "max", "p50", "p90", "p95", "p99", "p999")

_NUMBER = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_MEAN = re.compile(rf"^Average (?:inference )?time cost(?: total)?:\s*{_NUMBER}\s*ms", re.M)
_REQUESTS = re.compile(r"^(?:Total inference requests|Total iterations):\s*(\d+)", re.M)
_RUNS = re.compile(r"^Runs:\s*(\d+)", re.M)
_TOTAL = re.compile(rf"^(?:Total inference time cost|Total time cost):\s*{_NUMBER}", re.M)
_RUN_TIME = re.compile(rf"^(?:Total inference run time|Total run time):\s*{_NUMBER}\s*s", re.M)
_SESSION = re.compile(rf"^Session creation time cost:\s*{_NUMBER}\s*s", re.M)
_PEAK = re.compile(r"^Peak working set size:\s*(\d+)", re.M)
# Anchored at the line start: the per-shape statistics of --data_shape are indented and in ms.
_PERCENTILE = re.compile(rf"^(Min|Max|P50|P90|P95|P99|P999) Latency(?::| is)\s*{_NUMBER}\s*(?:s|sec)\b", re.M)


class PerfOutputError(AdacompError):
    """The benchmark's output does not hold what a measurement needs."""


@dataclass(frozen=True)
class PerfOutput:
    """The numbers one `onnxruntime_perf_test` run printed (None where it did not print them)."""

    mean_ms: float
    requests: int
    total_time_s: float | None  # sum of the per-request latencies
    run_time_s: float | None  # wall time of the timed loop (excludes session creation, warm-up)
    session_creation_s: float | None
    peak_working_set_bytes: int | None
    percentiles_ms: Mapping[str, float] = field(default_factory=dict)  # keys from PERCENTILES


def _float(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) else None


def parse_perf_output(text: str) -> PerfOutput:
    """The summary of one run; raises PerfOutputError when the average or the count is missing."""
    text = text.replace("\r\n", "\n")
    mean = _float(_MEAN, text)
    count = _REQUESTS.search(text) or _RUNS.search(text)
    if mean is None or count is None:
        missing = "average inference time" if mean is None else "number of inference requests"
        last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no output")
        raise PerfOutputError(f"perf_test output has no {missing}; last line: {last.strip()!r}")
    requests = int(count.group(1))
    if requests <= 0:
        raise PerfOutputError(f"perf_test ran {requests} inference requests")
    percentiles: dict[str, float] = {}
    for match in _PERCENTILE.finditer(text):
        value = float(match.group(2))
        if math.isfinite(value):
            percentiles.setdefault(match.group(1).lower(), value * 1000.0)
    peak = _PEAK.search(text)
    return PerfOutput(
        mean_ms=mean,
        requests=requests,
        total_time_s=_float(_TOTAL, text),
        run_time_s=_float(_RUN_TIME, text),
        session_creation_s=_float(_SESSION, text),
        peak_working_set_bytes=int(peak.group(1)) if peak else None,
        percentiles_ms=percentiles,
    )


def parse_result_file(text: str, output: PerfOutput) -> list[float] | None:
    """Per-run latencies in ms from the result file, or None when they cannot be trusted.

    Trusted means: one line per request and a sum that matches the printed total in seconds (recent
    versions) or in nanoseconds (an old one); anything else is ignored rather than guessed at.
    """
    values: list[float] = []
    for line in text.replace("\r\n", "\n").splitlines():
        if not line.strip() or " Latency" in line:
            continue  # the statistics block that follows the per-run lines
        parts = line.rsplit(",", 4)
        if len(parts) != 5:
            return None
        try:
            values.append(float(parts[1]))
        except ValueError:
            return None
    if len(values) != output.requests or not all(math.isfinite(v) and v >= 0 for v in values):
        return None
    total = sum(values)
    reference = output.total_time_s
    if reference is None:
        reference = output.mean_ms * output.requests / 1000.0
    for scale_to_s in (1.0, 1e-9):
        if math.isclose(total * scale_to_s, reference, rel_tol=0.01, abs_tol=1e-6):
            return [v * scale_to_s * 1000.0 for v in values]
    return None


def latency_stats(output: PerfOutput, samples_ms: Sequence[float] | None = None) -> tuple[LatencyStats, str]:
    """LatencyStats and a note on where they came from (real samples, or percentiles plus an estimate)."""
    if samples_ms:
        return LatencyStats.from_samples(
            samples_ms
        ), f"latency from {len(samples_ms)} per-run times (perf_test result file)"
    p50 = output.percentiles_ms.get("p50")
    p90 = output.percentiles_ms.get("p90")
    if p50 is None or p90 is None:
        raise PerfOutputError(
            "perf_test printed no P50/P90 latency and no usable per-run result file; "
            "run a version that takes -s (onnxruntime >= 1.4)"
        )
    std = max(0.0, (p90 - p50) / Z90)
    note = (
        f"median/p90 are perf_test's P50/P90 (sorted[int(n*q)]), mean its average; std estimated as "
        f"(P90-P50)/{Z90} assuming normal timings (perf_test prints no std)"
    )
    return LatencyStats(
        median_ms=p50, p90_ms=p90, mean_ms=output.mean_ms, std_ms=std, runs=output.requests
    ), note

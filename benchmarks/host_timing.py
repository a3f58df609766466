"""Latency of ONNX models on this host's CPU, measured side by side so that load cancels.

One thread, batch 1, ONNX Runtime's CPU provider. Every model is timed in each round (a warm-up,
then `runs` calls), round after round, and each model's median over rounds is reported: two
models compared this way see the same machine, busy or idle, which separate runs minutes apart
do not.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np
import onnxruntime as ort

from adacomp.runtime.session import open_session

OPT_LEVELS = ("all", "extended", "basic", "none")


def session(onnx_bytes: bytes, level: str = "all") -> ort.InferenceSession:
    """One thread, the given graph optimisation level, and what the artifact declares
    (adacomp.runtime.session): an int8-weights model is timed as it is run everywhere."""
    return open_session(onnx_bytes, threads=1, optimization=level)


def time_round(run: Callable[[], object], runs: int) -> float:
    """Milliseconds per call over `runs` calls, after a short warm-up."""
    for _ in range(max(3, runs // 10)):
        run()
    started = time.perf_counter()
    for _ in range(runs):
        run()
    return (time.perf_counter() - started) / runs * 1000.0


def paired_medians_ms(
    models: Mapping[str, tuple[bytes, str]], example: np.ndarray, *, rounds: int, runs: int
) -> dict[str, float]:
    """Name -> median ms per call over `rounds` interleaved rounds; models are (bytes, opt level)."""
    runners: dict[str, Callable[[], object]] = {}
    for name, (onnx_bytes, level) in models.items():
        s = session(onnx_bytes, level)
        runners[name] = functools.partial(s.run, None, {s.get_inputs()[0].name: example})
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(time_round(run, runs))
    return {name: statistics.median(samples) for name, samples in times.items()}

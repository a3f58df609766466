"""The process that times an ONNX model on this machine's CPU.

Run as `python -m adacomp.device_farm.host_worker SETTINGS_JSON < model.onnx`; prints one JSON
line. A separate, short-lived process is the isolation: it pins itself to its reserved cores
before onnxruntime creates a thread, never imports torch, and its peak RSS is the model's.
Nothing but ONNX bytes and JSON crosses the boundary.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
MIN_SAMPLE_S = 1e-3


def pin(cores: list[int] | None) -> list[int]:
    """Pin this process to `cores` (Linux); returns the cores it may run on."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def rapl_domains() -> list[Path]:
    """Readable top-level RAPL package domains (energy_uj); empty when not exposed or not readable."""
    domains = []
    for domain in sorted(RAPL_ROOT.glob("intel-rapl:*")):
        if domain.name.count(":") != 1:
            continue  # sub-domains (core, uncore, dram) are inside the package counter
        try:
            int((domain / "energy_uj").read_text())
            domains.append(domain)
        except (OSError, ValueError):
            continue
    return domains


def read_energy_uj(domains: list[Path]) -> list[tuple[int, int]]:
    readings = []
    for domain in domains:
        energy = int((domain / "energy_uj").read_text())
        try:
            wrap = int((domain / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            wrap = 0
        readings.append((energy, wrap))
    return readings


def energy_delta_uj(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> int:
    total = 0
    for (start, wrap), (end, _) in zip(before, after, strict=True):
        total += end - start if end >= start else end + wrap - start  # the counter wrapped
    return total


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int | None:
    """Reset the peak-RSS mark (Linux clear_refs "5") so it counts only what comes next."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def _peak_rss_kib() -> int:
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _inputs(session: Any, batch_size: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for arg in session.get_inputs():
        shape = [batch_size if not isinstance(d, int) or d <= 0 else d for d in arg.shape]
        if "float16" in arg.type:
            feeds[arg.name] = rng.standard_normal(shape).astype(np.float16)
        elif "int64" in arg.type:
            feeds[arg.name] = np.zeros(shape, dtype=np.int64)
        else:
            feeds[arg.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def measure(model: bytes, settings: dict[str, Any]) -> dict[str, Any]:
    cores = pin(settings.get("cores"))
    import onnxruntime as ort

    from adacomp.device_farm.measurement import robust_cv  # after pinning: it imports numpy
    from adacomp.runtime.session import declared_session_config, open_session

    config = declared_session_config(model)  # its probe session is not the model's memory
    rss_before = _reset_peak_rss()
    session = open_session(model, threads=int(settings["intra_op_threads"]), config=config)
    feeds = _inputs(session, int(settings["batch_size"]))
    warmup_started = time.perf_counter()
    for _ in range(max(1, int(settings["warmup_runs"]))):
        session.run(None, feeds)
    per_run = (time.perf_counter() - warmup_started) / max(1, int(settings["warmup_runs"]))
    # A sample of sub-millisecond runs is timer noise: time groups of runs lasting >= 1 ms each
    # and report the per-run mean of each group (as timeit does).
    group = max(1, min(1000, int(MIN_SAMPLE_S / max(per_run, 1e-7))))

    domains = rapl_domains()
    attempts = []
    for _attempt in range(int(settings["repeats_when_noisy"]) + 1):
        samples: list[float] = []
        energy_before = read_energy_uj(domains) if domains else []
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter_ns()
            for _ in range(group):
                session.run(None, feeds)
            samples.append((time.perf_counter_ns() - t0) / 1e6 / group)
            n = len(samples)
            if n >= int(settings["max_runs"]) or time.perf_counter() - started > float(
                settings["max_seconds"]
            ):
                break
            if n >= int(settings["min_runs"]) and robust_cv(samples) <= float(settings["target_cv"]):
                break
        energy = energy_delta_uj(energy_before, read_energy_uj(domains)) if domains else None
        cv = robust_cv(samples)  # the median is what is reported: preempted runs move neither
        attempts.append({"samples_ms": samples, "energy_uj": energy, "cv": cv})
        if cv <= float(settings["max_cv"]):
            break
    best = min(attempts, key=lambda a: float(a["cv"]))  # type: ignore[arg-type]
    best["low_ms"] = low_percentile(list(best["samples_ms"]))  # type: ignore[arg-type]
    rss_after = _peak_rss_kib()
    return {
        **best,
        "attempts": len(attempts),
        "runs_per_sample": group,
        "cores": cores,
        "onnxruntime": ort.__version__,
        # What the session and its runs added to the process's peak resident memory.
        "peak_memory_mb": max(0, rss_after - rss_before) / 1024 if rss_before is not None else None,
        "rapl_domains": [d.name for d in domains],
        "session_config": config,
    }


def low_percentile(values: list[float], share: float = 0.1) -> float:
    """The `share` quantile (nearest rank): robust to the slow spells a shared machine has, which
    move a median by half between two runs of the same model (measured on this repo's 2-core VM)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(share * len(ordered))))]


def profile_kernels(model: bytes, settings: dict[str, Any]) -> dict[str, Any]:
    """Per-kernel times from ORT's profiler: the median over runs of each node of the graph it runs.

    The profiler's own cost (a few microseconds a node) is in these numbers; the whole-model
    latency is measured without it, and calibration fits how the two relate."""
    import tempfile

    cores = pin(settings.get("cores"))
    import onnxruntime as ort

    from adacomp.runtime.session import declared_session_config, open_session

    config = declared_session_config(model)
    with tempfile.TemporaryDirectory(prefix="adacomp-profile-") as tmp:
        session = open_session(
            model,
            threads=int(settings["intra_op_threads"]),
            config=config,
            quiet=True,
            profile_prefix=Path(tmp) / "profile",
        )
        feeds = _inputs(session, int(settings["batch_size"]))
        warmup = max(1, int(settings["warmup_runs"]))
        started = time.perf_counter()
        runs = 0
        while runs < warmup + int(settings["min_runs"]) or (
            runs < warmup + int(settings["max_runs"]) and time.perf_counter() - started < 0.5
        ):
            session.run(None, feeds)
            runs += 1
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name.removesuffix("_kernel_time")
        times.setdefault(node, []).append(float(event["dur"]) / 1000)
        ops[node] = str(event.get("args", {}).get("op_name", ""))
    return {
        # The first `warmup` runs of each node are its warm-up; the 10th percentile of the rest,
        # like the whole-model `low_ms`, is the kernel's time when nothing disturbs the core.
        "kernel_ms": {node: low_percentile(values[warmup:] or values) for node, values in times.items()},
        "kernel_ops": ops,
        "kernel_runs": runs - warmup,
        "cores": cores,
        "onnxruntime": ort.__version__,
    }


def refused_model(exc: BaseException) -> bool:
    """Whether ONNX Runtime (or onnx) refused the model itself: a graph it will not load or run.
    Those fail alone; anything else (pinning, the worker's own code) is the device's problem."""
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("onnxruntime", "onnx")


def main() -> int:
    settings = json.loads(sys.argv[1])
    model = sys.stdin.buffer.read()
    try:
        result = measure(model, settings)
        if settings.get("profile_kernels"):  # same process, after the timed runs
            result.update(profile_kernels(model, settings))
    except Exception as exc:  # reported to the parent as data, one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {first_line}"
        print(json.dumps({"error": error, "model_refused": refused_model(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

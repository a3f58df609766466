"""Device-farm numbers: emulator speed, host measurement cost, agent overhead, calibration accuracy.

Run: `.venv/bin/python benchmarks/farm_bench.py [--calibration-models N]`. Prints tables and
writes JSON beside them (benchmarks/results/farm_bench.json). Everything is measured in the same
run on this machine, side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adacomp.device_farm import MeasureSettings, OnnxModel
from adacomp.device_farm.cost_model import predict
from adacomp.device_farm.devices.agent import AgentDevice
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.graph import analyze
from adacomp.device_farm.profiles import builtin_profile_names, load_profile
from adacomp.platform.ops.calibrate import run_calibration
from adacomp.platform.table import format_table
from adacomp.search_spaces import export_onnx
from adacomp.tasks import load_task

SETTINGS = MeasureSettings(warmup_runs=3, min_runs=20, max_runs=200, target_cv=0.05)


def zoo() -> dict[str, OnnxModel]:
    models = {}
    for name in ("digits", "mnist1d", "mobilenet_digits"):
        task = load_task(name)
        models[name] = OnnxModel(
            export_onnx(task.build_model().eval(), task.example_input(2)), f"{name}.onnx"
        )
    return models


def emulator_speed(models: dict[str, OnnxModel]) -> list[dict[str, Any]]:
    rows = []
    profiles = [load_profile(n) for n in builtin_profile_names()]
    for name, model in models.items():
        proto = model.proto()
        n = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            summary = analyze(proto)
            for profile in profiles:
                predict(summary, profile)
            n += 1
        full = n * len(profiles) / (time.perf_counter() - started)
        summary = analyze(proto)
        n = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            for profile in profiles:
                predict(summary, profile)
            n += 1
        rows.append(
            {
                "model": name,
                "ops": len(summary.ops),
                "analyze+predict_per_s": full,
                "predict_per_s": n * len(profiles) / (time.perf_counter() - started),
            }
        )
    return rows


def host_cost(models: dict[str, OnnxModel]) -> list[dict[str, Any]]:
    rows = []
    device = HostDevice()
    for name, model in models.items():
        started = time.perf_counter()
        m = device.measure(model, SETTINGS)
        rows.append(
            {
                "model": name,
                "wall_s": time.perf_counter() - started,
                "median_ms": m.latency.median_ms,
                "cv": m.latency.cv,
                "runs": m.latency.runs,
                "peak_memory_mb": m.peak_memory_mb,
            }
        )
    return rows


def agent_overhead(models: dict[str, OnnxModel]) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp())
    token = tmp / "token"
    token.write_text("benchmark-token-0123456789abcdef")
    process = subprocess.Popen(
        [sys.executable, "-m", "adacomp", "farm", "agent", "--port", "0", "--token-file", str(token)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = re.search(r":(\d+)$", process.stdout.readline().strip())
        assert port is not None
        agent = AgentDevice("agent", "host", url=f"http://127.0.0.1:{port.group(1)}", token_file=token)
        host = HostDevice()
        fixed = SETTINGS.model_copy(update={"min_runs": 50, "max_runs": 50})  # same work both ways
        rows = []
        for name, model in models.items():
            walls = {}
            for label, device in (("in_process", host), ("agent", agent)):
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    device.measure(model, fixed)
                    times.append(time.perf_counter() - started)
                walls[label] = sorted(times)[1]
            rows.append(
                {
                    "model": name,
                    "in_process_s": walls["in_process"],
                    "agent_s": walls["agent"],
                    "overhead_ms": 1000 * (walls["agent"] - walls["in_process"]),
                    "ratio": walls["agent"] / walls["in_process"],
                }
            )
        return rows
    finally:
        process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-models", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "farm_bench.json")
    args = parser.parse_args()
    models = zoo()
    results: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python benchmarks/farm_bench.py", *sys.argv[1:]]),
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    }
    results["emulator"] = emulator_speed(models)
    print(
        format_table(
            ["model", "ops", "analyze+predict / s", "predict / s"],
            [
                [r["model"], r["ops"], f"{r['analyze+predict_per_s']:.0f}", f"{r['predict_per_s']:.0f}"]
                for r in results["emulator"]
            ],
        )
    )
    results["host"] = host_cost(models)
    print()
    print(
        format_table(
            ["model", "wall s", "median ms", "cv", "runs", "peak MB"],
            [
                [
                    r["model"],
                    f"{r['wall_s']:.2f}",
                    f"{r['median_ms']:.3f}",
                    f"{r['cv']:.1%}",
                    r["runs"],
                    r["peak_memory_mb"],
                ]
                for r in results["host"]
            ],
        )
    )
    results["agent"] = agent_overhead(models)
    print()
    print(
        format_table(
            ["model", "in-process s", "via agent s", "overhead ms", "ratio"],
            [
                [
                    r["model"],
                    f"{r['in_process_s']:.3f}",
                    f"{r['agent_s']:.3f}",
                    f"{r['overhead_ms']:.0f}",
                    f"{r['ratio']:.2f}",
                ]
                for r in results["agent"]
            ],
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        report = run_calibration(
            device="host",
            config=None,
            models=args.calibration_models,
            out_dir=Path(tmp),
            store=Path(tmp) / "store",
            log=lambda m: print(m, file=sys.stderr),
        )
        results["calibration"] = {
            "emulator": report.emulator,
            "flops_baseline": report.flops_baseline,
            "models": report.models,
            "held_out": report.held_out,
            "rows": report.rows,
        }
    print()
    print(report.table())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""AdaSpring benchmarks: supernet vs. trained-alone accuracy, selection latency, switch cost, and
a context trace replayed adaptively vs. with one static model. Prints tables, writes
benchmarks/results/supernet_bench.json.

    python benchmarks/supernet_bench.py                  # ~10 min on 2 cores
    python benchmarks/supernet_bench.py --steps 300 --seeds 1 --trials 12

1. Accuracy (digits): one supernet ensemble-trained for S steps, then configurations extracted
   (BatchNorm re-estimated on 8 training batches, no weight update) vs. the same configurations
   trained alone: sliced from the same trained model, then S steps of plain training each (the
   same steps, batch size and learning rate as the supernet; the supernet's S steps serve every
   configuration at once, training K of them alone costs K x S).
2. Selection: Selector.select over 10..10,000 configurations and 2,000 random contexts.
3. Switch cost: onnxruntime session creation for each model of a real bundle (cold) vs. a cached
   session, and the first inference after a switch, on this machine's CPU.
4. Trace: the built-in drain trace on the real bundle, adaptive vs. the static configuration the
   selector picks for the trace's first context; and the same on a synthetic 12-configuration
   manifest whose costs rise with accuracy (as in a MobileNet family), because on the tiny
   digits CNN one configuration is both fast and accurate on each emulated phone.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adacomp.platform.search_config import SearchConfig
from adacomp.platform.supernet.bundle import export_bundle
from adacomp.platform.supernet.search import supernet_search
from adacomp.platform.supernet_training.training import train_supernet_job
from adacomp.platform.table import format_table
from adacomp.runtime import AdaptiveModel, Context, Manifest, Selector, drain_trace, load_manifest, replay
from adacomp.runtime.trace import replay_static
from adacomp.search_spaces.supernet import (
    EnsembleBudget,
    SubnetConfig,
    Supernet,
    recalibrate_batchnorm,
    train_supernet,
)
from adacomp.tasks import TrainBudget, evaluate, load_task, pretrained_model, train

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "supernet_runs"
LR = 3e-3  # measured best of 1e-3, 2e-3, 3e-3 for the supernet on digits (600 steps)
BATCH = 64


def _fraction_config(supernet: Supernet, width: float, rank: float) -> SubnetConfig:
    """Every group at the allowed width closest to `width` of its channels, same for rank."""

    def nearest(values: tuple[int, ...], fraction: float) -> int:
        return min(values, key=lambda v: abs(v / values[-1] - fraction))

    space = supernet.space
    return SubnetConfig.of(
        {g: nearest(v, width) for g, v in space.widths.items()},
        {k: nearest(v, rank) for k, v in space.ranks.items()},
        (),
        "fp32",
    )


def accuracy_table(steps: int, seeds: list[int], sampled: int) -> list[dict[str, Any]]:
    task = load_task("digits")
    model = pretrained_model(task)
    base = evaluate(model, task.data.test)
    batches = [torch.from_numpy(b) for b in task.calibration_batches(8, 64)]
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        supernet = Supernet.build(model, task.example_input(2))
        configs = {
            "largest": supernet.space.largest("fp32"),
            "width 0.75, rank 0.75": _fraction_config(supernet, 0.75, 0.75),
            "width 0.5, rank 0.5": _fraction_config(supernet, 0.5, 0.5),
            "width 0.75, rank 0.25": _fraction_config(supernet, 0.75, 0.25),
            "smallest": supernet.space.smallest("fp32"),
        }
        starts = {name: supernet.extract(config) for name, config in configs.items()}
        began = time.perf_counter()
        budget = EnsembleBudget(steps=steps, batch_size=BATCH, lr=LR, sampled=sampled)
        train_supernet(supernet, task.data.train, budget, seed=seed)
        supernet_seconds = time.perf_counter() - began
        for name, config in configs.items():
            extracted = evaluate(recalibrate_batchnorm(supernet.extract(config), batches), task.data.test)
            alone_model = starts[name]
            began = time.perf_counter()
            train(alone_model, task.data.train, TrainBudget(steps=steps, batch_size=BATCH, lr=LR), seed=seed)
            alone_seconds = time.perf_counter() - began
            alone = evaluate(alone_model, task.data.test)
            rows.append(
                {
                    "seed": seed,
                    "configuration": name,
                    "parameters": sum(p.numel() for p in alone_model.parameters()),
                    "supernet": extracted,
                    "alone": alone,
                    "delta_points": 100 * (extracted - alone),
                    "supernet_seconds": supernet_seconds,
                    "alone_seconds": alone_seconds,
                    "baseline": base,
                }
            )
            print(f"  seed {seed} {name}: supernet {extracted:.4f}, alone {alone:.4f}", flush=True)
    return rows


ACCURACY_FIRST = {"accuracy": 1.0, "latency": 0.05, "energy": 0.05, "memory": 0.0, "storage": 0.0}


def synthetic_manifest(n: int, seed: int = 0, utility: dict[str, float] | None = None) -> Manifest:
    """`n` plausible configurations on one device (costs rise with accuracy, with scatter)."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 1, n)
    configurations = [
        {
            "id": f"c{i:05d}",
            "file": f"models/c{i:05d}.onnx",
            "sha256": "0" * 64,
            "bytes": 1000,
            "architecture": {"size": float(size[i])},
            "accuracy": float(np.clip(0.7 + 0.29 * size[i] ** 0.5 + rng.normal(0, 0.01), 0, 1)),
            "storage_bytes": int(20_000 + 600_000 * size[i]),
            "devices": {
                "phone": {
                    "latency_ms": float(0.5 + 9.5 * size[i] * rng.uniform(0.8, 1.2)),
                    "energy_mj": float(1 + 30 * size[i] * rng.uniform(0.8, 1.2)),
                    "memory_mb": float(5 + 60 * size[i]),
                }
            },
        }
        for i in range(n)
    ]
    return Manifest.from_dict(
        {
            "schema_version": 1,
            "name": "synthetic",
            "task": "synthetic",
            "created": "2026-11-23T00:00:00+00:00",
            "input": {"name": "input", "shape": [None, 8], "dtype": "float32"},
            "output": {"name": "logits"},
            "utility": utility
            or {"accuracy": 1.0, "latency": 0.3, "energy": 0.2, "memory": 0.0, "storage": 0.1},
            "devices": ["phone"],
            "baseline": {
                "accuracy": 0.99,
                "storage_bytes": 620_000,
                "devices": {"phone": {"latency_ms": 10.0, "energy_mj": 31.0, "memory_mb": 65.0}},
            },
            "configurations": configurations,
        }
    )


def selection_latency(sizes: list[int], contexts: int = 2000) -> list[dict[str, Any]]:
    rng = random.Random(0)
    trace = [
        Context(
            latency_budget_ms=rng.uniform(0.5, 12),
            battery=rng.uniform(0.05, 1),
            free_memory_mb=rng.uniform(10, 80),
            min_accuracy=rng.choice([None, 0.8, 0.9]),
        )
        for _ in range(contexts)
    ]
    rows = []
    for n in sizes:
        manifest = synthetic_manifest(n)
        for hysteresis in (True, False):
            selector = Selector(manifest, "phone", hysteresis=hysteresis)
            for context in trace[:50]:  # warm up numpy's code paths
                selector.select(context)
            times = []
            for context in trace:
                t0 = time.perf_counter_ns()
                selector.select(context)
                times.append((time.perf_counter_ns() - t0) / 1000)
            times.sort()
            rows.append(
                {
                    "configurations": n,
                    "hysteresis": hysteresis,
                    "median_us": statistics.median(times),
                    "p99_us": times[int(0.99 * len(times))],
                    "max_us": times[-1],
                }
            )
    return rows


def bundle_config(steps: int, trials: int) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": "bench",
            "task": "digits",
            "targets": ["pixel4", "raspberrypi4"],
            "objectives": [
                {"metric": "accuracy"},
                {"metric": "latency", "target": "raspberrypi4"},
                {"metric": "storage"},
            ],
            "constraints": [{"metric": "accuracy_drop", "max": 10.0}],
            "utility": {"accuracy": 1.0, "latency": 0.3, "energy": 0.1, "storage": 0.2},
            "output": {"dir": str(RUNS)},
            "supernet": {"steps": steps, "lr": LR, "trials": trials, "bundle_size": 8},
        }
    )


def switch_cost(bundle: Path, repeats: int = 20) -> dict[str, Any]:
    manifest = load_manifest(bundle)
    ids = list(manifest.ids)
    cold: list[float] = []
    for _ in range(repeats):
        model = AdaptiveModel(bundle, "pixel4", cache_size=1)  # every switch loads a session
        for config_id in ids:
            event = model.switch_to(config_id)
            assert event is not None and not event.cached
            cold.append(event.seconds * 1000)
    model = AdaptiveModel(bundle, "pixel4", cache_size=len(ids))
    for config_id in ids:
        model.switch_to(config_id)
    cached, first, steady = [], [], []
    x = np.random.default_rng(0).standard_normal((1, *manifest.input.shape[1:])).astype(np.float32)
    for _ in range(repeats):
        for config_id in ids:
            event = model.switch_to(config_id)
            if event is not None:
                cached.append(event.seconds * 1000)
            t0 = time.perf_counter()
            model.run(x)
            first.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            model.run(x)
            steady.append((time.perf_counter() - t0) * 1000)
    return {
        "models": len(ids),
        "model_bytes_median": statistics.median(c.bytes for c in manifest.configurations),
        "cold_switch_ms_median": statistics.median(cold),
        "cold_switch_ms_p90": sorted(cold)[int(0.9 * len(cold))],
        "cached_switch_ms_median": statistics.median(cached),
        "first_inference_after_switch_ms_median": statistics.median(first),
        "steady_inference_ms_median": statistics.median(steady),
    }


def trace_comparison(manifest: Manifest, source: str) -> list[dict[str, Any]]:
    rows = []
    for device in manifest.devices:
        latencies = [c.devices[device].latency_ms for c in manifest.configurations]
        memories = [c.devices[device].memory_mb for c in manifest.configurations]
        memory_range = (min(memories), max(memories)) if None not in memories else None
        trace = drain_trace((min(latencies), max(latencies)), steps=240, memory_range_mb=memory_range)  # type: ignore[arg-type]
        adaptive = replay(Selector(manifest, device), trace)
        static_id = Selector(manifest, device).select(trace[0].context).id
        static = replay_static(manifest, device, static_id, trace)
        for label, result in (("adaptive", adaptive), (f"static {static_id}", static)):
            rows.append({"bundle": source, "device": device, "run": label, **result.summary()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=600, help="supernet (and trained-alone) training steps")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sampled", type=int, default=2, help="random configurations per step")
    parser.add_argument("--trials", type=int, default=24, help="configurations the bundle's search evaluates")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models: one thread is fastest and leaves a core for the farm
    report: dict[str, Any] = {
        "command": "python benchmarks/supernet_bench.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items())
    }

    print(f"1. supernet vs. trained alone, digits, {args.steps} steps, {args.seeds} seed(s)", flush=True)
    rows = accuracy_table(args.steps, list(range(args.seeds)), args.sampled)
    report["accuracy"] = rows
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_config.setdefault(row["configuration"], []).append(row)
    print(
        format_table(
            ["configuration", "params", "supernet acc", "alone acc", "delta (pt)", "worst delta (pt)"],
            [
                [
                    name,
                    group[0]["parameters"],
                    f"{statistics.mean(r['supernet'] for r in group):.4f}",
                    f"{statistics.mean(r['alone'] for r in group):.4f}",
                    f"{statistics.mean(r['delta_points'] for r in group):+.2f}",
                    f"{min(r['delta_points'] for r in group):+.2f}",
                ]
                for name, group in by_config.items()
            ],
        )
    )
    seconds = statistics.mean(r["supernet_seconds"] for r in rows)
    alone = statistics.mean(r["alone_seconds"] for r in rows)
    print(f"supernet training {seconds:.1f} s (all configurations); one configuration alone {alone:.1f} s")

    print("\n2. selection latency (Selector.select, 2,000 random contexts)", flush=True)
    report["selection"] = selection_latency([10, 100, 1000, 10000])
    print(
        format_table(
            ["configurations", "hysteresis", "median us", "p99 us", "max us"],
            [
                [
                    r["configurations"],
                    r["hysteresis"],
                    f"{r['median_us']:.1f}",
                    f"{r['p99_us']:.1f}",
                    f"{r['max_us']:.1f}",
                ]
                for r in report["selection"]
            ],
        )
    )

    print(
        f"\n3. a real bundle: supernet train ({args.steps} steps) -> search ({args.trials}) -> export",
        flush=True,
    )
    shutil.rmtree(RUNS, ignore_errors=True)
    config = bundle_config(args.steps, args.trials)
    train_supernet_job(config)
    supernet_search(config)
    bundle = export_bundle(config).directory
    report["switch"] = switch_cost(bundle)
    print(
        format_table(
            ["measure", "value"],
            [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in report["switch"].items()],
        )
    )

    print("\n4. drain trace (240 steps), adaptive vs. static", flush=True)
    report["trace"] = trace_comparison(load_manifest(bundle), "digits supernet")
    report["trace"] += trace_comparison(
        synthetic_manifest(12, 1, ACCURACY_FIRST), "synthetic, 12 configurations"
    )
    print(
        format_table(
            [
                "bundle",
                "device",
                "run",
                "violations",
                "switches",
                "fallbacks",
                "mean acc",
                "mean lat ms",
                "energy mJ",
            ],
            [
                [
                    r["bundle"],
                    r["device"],
                    r["run"],
                    r["violations"],
                    r["switches"],
                    r["fallbacks"],
                    f"{r['mean_accuracy']:.4f}",
                    f"{r['mean_latency_ms']:.4f}",
                    "-" if r["total_energy_mj"] is None else f"{r['total_energy_mj']:.1f}",
                ]
                for r in report["trace"]
            ],
        )
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "supernet_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {RESULTS / 'supernet_bench.json'}")


if __name__ == "__main__":
    main()

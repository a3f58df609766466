"""Where a supernet-mode plan's seconds go, and how few batches BatchNorm re-estimation needs.

A supernet-mode search scores a plan with no training: extract the configuration, re-estimate
its BatchNorm statistics on `supernet.bn_batches` fixed training batches, export, score the
ONNX model, measure it. Its throughput target (issue 37: >= 30 plans a minute on MobileNetV2,
2 cores) is set by those stages, and the re-estimation was the largest. This benchmark reads
a search directory whose supernet is trained (`runs/<name>`, any task), then on one torch
thread, as a trial worker runs:

1. Stage costs per plan (median over the sampled configurations): extract, BatchNorm
   re-estimation at each batch count, ONNX export at fp32 and int8 (static, calibrated), and
   the ONNX Runtime accuracy on the test split.
2. Accuracy against batch count: every configuration re-estimated on 1..N batches of 64 and
   scored in torch, against the reference (the most batches): mean and largest absolute
   difference in points, and Kendall's tau of the ranking (what a search needs is the order).

    python benchmarks/supernet_throughput.py --search runs/digits-supernet
    python benchmarks/supernet_throughput.py --search benchmarks/results/results_runs/shapes_resnet-supernet \
        --configs 24 --bn 2,4,8,16 --json benchmarks/results/supernet_throughput_resnet.json

Prints two tables and writes JSON (with the CPU's model and ISA flags under `cpu`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).parent))
from report import write_report

from adacomp.environment import EXPORT_MEMO_VARIABLE
from adacomp.platform.evaluate.evaluators.supernet import (
    BN_BATCH_SIZE,
    precision_plan,
    supernet_options,
    trained_supernet,
)
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.table import format_table
from adacomp.search_spaces import export_onnx
from adacomp.search_spaces.supernet import SubnetConfig, Supernet, recalibrate_batchnorm
from adacomp.tasks import evaluate, evaluate_onnx, load_task, pretrained_model
from adacomp.tasks._base import Task

RESULTS = Path(__file__).parent / "results"


def load_search(directory: Path) -> tuple[SearchConfig, Task, torch.nn.Module, Supernet]:
    """The search's config (from its search.json), task, trained model and trained supernet."""
    state = json.loads((directory / "search.json").read_text())
    config = SearchConfig.model_validate(state["config"])
    task = load_task(config.task)
    model = pretrained_model(task, seed=config.seed)
    weights = load_file(str(directory / "supernet" / "supernet.safetensors"))
    supernet = trained_supernet(model, task.example_input(2), supernet_options(config), weights)
    return config, task, model, supernet


def sampled_configs(supernet: Supernet, count: int, seed: int) -> list[SubnetConfig]:
    """`count` distinct random configurations at fp32 (precision is applied at export only)."""
    rng = random.Random(seed)
    found: dict[str, SubnetConfig] = {}
    for _ in range(count * 20):
        drawn = supernet.space.sample(rng)
        config = SubnetConfig.of(
            dict(drawn.width), dict(drawn.rank), drawn.skip, "fp32", dict(drawn.alternative)
        )
        found.setdefault(config.hash, config)
        if len(found) == count:
            break
    return list(found.values())


def measure(task: Task, supernet: Supernet, configs: list[SubnetConfig], counts: list[int]) -> dict[str, Any]:
    """Stage seconds and torch accuracies of every configuration at every batch count."""
    batches = [torch.from_numpy(b) for b in task.calibration_batches(max(counts), BN_BATCH_SIZE)]
    calibration = task.calibration_batches()
    example = task.example_input(2)
    stages: dict[str, list[float]] = {"extract": [], "export fp32": [], "export int8": [], "ORT accuracy": []}
    stages.update({f"BN re-estimation, {k} batches": [] for k in counts})
    accuracy: dict[int, list[float]] = {k: [] for k in counts}
    for config in configs:
        start = time.perf_counter()
        supernet.extract(config)
        stages["extract"].append(time.perf_counter() - start)
        for k in counts:
            copy = supernet.extract(config)
            start = time.perf_counter()
            static = recalibrate_batchnorm(copy, batches[:k])
            stages[f"BN re-estimation, {k} batches"].append(time.perf_counter() - start)
            accuracy[k].append(100.0 * evaluate(static, task.data.test))
        # `static` is now re-estimated on the most batches: what gets exported
        start = time.perf_counter()
        onnx_model = export_onnx(static, example)
        stages["export fp32"].append(time.perf_counter() - start)
        start = time.perf_counter()
        export_onnx(static, example, plan=precision_plan(static, "int8"), calibration=calibration)
        stages["export int8"].append(time.perf_counter() - start)
        start = time.perf_counter()
        evaluate_onnx(onnx_model, task.data.test)
        stages["ORT accuracy"].append(time.perf_counter() - start)
    return {"stages": stages, "accuracy": accuracy}


def agreement(accuracy: dict[int, list[float]], reference: int) -> list[dict[str, Any]]:
    rows = []
    for k, values in sorted(accuracy.items()):
        differences = [abs(a - b) for a, b in zip(values, accuracy[reference], strict=True)]
        tau = kendalltau(values, accuracy[reference]).statistic if len(values) > 1 else float("nan")
        rows.append(
            {
                "bn_batches": k,
                "mean_abs_diff_pt": round(statistics.fmean(differences), 3),
                "max_abs_diff_pt": round(max(differences), 3),
                "kendall_tau": round(float(tau), 3),
                "mean_accuracy": round(statistics.fmean(values), 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--search", type=Path, required=True, help="a search directory with a trained supernet"
    )
    parser.add_argument("--configs", type=int, default=16, help="random configurations to sample")
    parser.add_argument("--bn", default="1,2,4,8,16", help="BatchNorm batch counts to compare, a,b,...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS / "supernet_throughput.json")
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(k) for k in args.bn.split(",") if k})
    except ValueError:
        print(f"supernet_throughput: --bn {args.bn!r}: expected positive integers, a,b,...")
        return 2
    if not counts or counts[0] < 1 or args.configs < 2:
        print("supernet_throughput: --bn: expected positive integers; --configs: expected at least 2")
        return 2
    weights = args.search / "supernet" / "supernet.safetensors"
    if not (args.search / "search.json").is_file() or not weights.is_file():
        print(
            f"supernet_throughput: --search {args.search}: expected a search directory with a trained supernet"
        )
        return 2
    threads, memo = torch.get_num_threads(), os.environ.get(EXPORT_MEMO_VARIABLE)
    torch.set_num_threads(1)  # a trial worker's one CPU
    os.environ[EXPORT_MEMO_VARIABLE] = "0"  # time every export: a re-run would read the memo back
    try:
        config, task, _, supernet = load_search(args.search)
        configs = sampled_configs(supernet, args.configs, args.seed)
        measured = measure(task, supernet, configs, counts)
    finally:  # as it was for a caller in the same process (the tests run `main` in theirs)
        torch.set_num_threads(threads)
        if memo is None:
            os.environ.pop(EXPORT_MEMO_VARIABLE, None)
        else:
            os.environ[EXPORT_MEMO_VARIABLE] = memo
    stage_rows = [
        {"stage": name, "median_s": round(statistics.median(values), 4), "max_s": round(max(values), 4)}
        for name, values in measured["stages"].items()
    ]
    rows = agreement(measured["accuracy"], counts[-1])
    print(f"{config.task}: {len(configs)} configurations, one torch thread")
    print(format_table(list(stage_rows[0]), [list(r.values()) for r in stage_rows]))
    print(f"\naccuracy against {counts[-1]} batches of {BN_BATCH_SIZE} (points)")
    print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    write_report(
        args.json,
        {
            "task": config.task,
            "search": str(args.search),
            "configurations": len(configs),
            "batch": BN_BATCH_SIZE,
            "stages": stage_rows,
            "bn_agreement": rows,
            "accuracy": {str(k): v for k, v in measured["accuracy"].items()},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

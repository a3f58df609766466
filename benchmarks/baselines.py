"""Are the built-in baselines converged? Each task trained with its budget and with 3x as long.

Run: `.venv/bin/python benchmarks/baselines.py [--tasks a,b] [--factor 3] [--seeds 0,1,2] [--json PATH]`.
Prints a table and writes JSON (default benchmarks/results/baselines.json). Compression is
judged against the baseline, so the baseline must be converged: the target is that training
`--factor` times as long (same schedule, stretched) gains at most 0.3 pt of test accuracy.
Both runs are averaged over `--seeds` (default 0,1,2) and measured side by side in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from report import write_report

from adacomp.platform.table import format_table
from adacomp.tasks import TrainBudget, builtin_task_names, evaluate, load_task, pretrained_model, train

TARGET_GAIN_PT = 0.3


def longer(budget: TrainBudget, factor: float) -> TrainBudget:
    if budget.steps is not None:
        return replace(budget, steps=round(budget.steps * factor))
    return replace(budget, epochs=budget.epochs * factor)


def measure(name: str, factor: float, seeds: list[int]) -> dict[str, object]:
    """Budget and `factor`x runs for each seed. The budget run is the cached baseline itself
    (`pretrained_model`: trained and cached when missing), so what is judged is the reference
    every search compares against, and a later search reuses it; its seconds are 0 when it was
    cached already. The test splits hold a few hundred to a few thousand images (one image is
    0.125 pt on mnist1d, 0.28 pt on digits): the gain is judged on the mean over seeds, and the
    report gives the resolution so that a gain of one image is read as what it is."""
    task = load_task(name)
    row: dict[str, object] = {"task": name, "budget": repr(task.train_budget), "seeds": seeds}
    row["test_images"] = len(task.data.test)  # type: ignore[arg-type]
    row["one_image_pt"] = round(100.0 / len(task.data.test), 3)  # type: ignore[arg-type]
    for label, budget in (("budget", task.train_budget), ("longer", longer(task.train_budget, factor))):
        accuracies, val_accuracies, seconds = [], [], 0.0
        for seed in seeds:
            started = time.perf_counter()
            if label == "budget":
                model = pretrained_model(task, seed=seed)
            else:
                torch.manual_seed(seed)
                model = task.build_model()
                train(model, task.data.train, budget, seed=seed, augment=task.augment)
            seconds += time.perf_counter() - started
            accuracies.append(evaluate(model, task.data.test))
            val_accuracies.append(evaluate(model, task.data.val))
            print(f"  {name} {label} seed {seed}: {100 * accuracies[-1]:.2f} %", flush=True)
        row[f"{label}_seconds"] = round(seconds, 1)
        row[f"{label}_test_accuracies"] = accuracies
        row[f"{label}_val_accuracies"] = val_accuracies
        row[f"{label}_test_accuracy"] = sum(accuracies) / len(accuracies)
    gain = 100.0 * (float(row["longer_test_accuracy"]) - float(row["budget_test_accuracy"]))  # type: ignore[arg-type]
    row["gain_pt"] = round(gain, 2)
    row["converged"] = gain <= TARGET_GAIN_PT
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(builtin_task_names()))
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--seeds", default="0,1,2", help="seeds averaged per run, a,b,c")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "baselines.json")
    args = parser.parse_args(argv)
    names = [n for n in args.tasks.split(",") if n]
    unknown = sorted(set(names) - set(builtin_task_names()))
    if unknown:
        print(
            f"baselines: --tasks: unknown {', '.join(unknown)}; built-in: {', '.join(builtin_task_names())}"
        )
        return 2
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        print(f"baselines: --seeds: expected comma-separated integers, got {args.seeds!r}")
        return 2
    started = time.perf_counter()
    rows = [measure(name, args.factor, seeds) for name in names]
    table = [
        [
            r["task"],
            f"{100 * float(r['budget_test_accuracy']):.2f}",  # type: ignore[arg-type]
            f"{100 * float(r['longer_test_accuracy']):.2f}",  # type: ignore[arg-type]
            f"{float(r['gain_pt']):+.2f}",  # type: ignore[arg-type]
            "yes" if r["converged"] else "NO",
            f"{r['one_image_pt']}",
            f"{r['budget_seconds']} / {r['longer_seconds']}",
        ]
        for r in rows
    ]
    headers = [
        "task",
        "test % (budget)",
        f"test % ({args.factor:g}x)",
        "gain pt",
        "converged",
        "1 image pt",
        "train s",
    ]
    print(format_table(headers, table))
    report = {
        "factor": args.factor,
        "target_gain_pt": TARGET_GAIN_PT,
        "seeds": seeds,
        "seconds": round(time.perf_counter() - started, 1),
        "tasks": rows,
    }
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

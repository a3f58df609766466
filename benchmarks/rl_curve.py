"""The RL agent over a supernet's plan space: does it learn, given the episodes it needs?

A fine-tune search gives AdaDeep's agent a few dozen episodes, too few to learn from. In
supernet mode a plan costs seconds, so the agent can run hundreds (issue 37). This runs the
`rl` strategy and, as the reference it must beat, `random`, each for `--trials` plans over one
trained supernet (copied from `--supernet-from`, e.g. results_table's run of the task, or
trained once here by the first search and shared with the second), and reports per strategy
the utility of every plan in the order proposed, its mean over a sliding window (the learning
curve), the running best and the front's hypervolume; a plot of both curves is written beside
the JSON.

Run: `.venv/bin/python -u benchmarks/rl_curve.py [--task mobilenet_digits] [--trials 150]
[--supernet-from benchmarks/results/results_runs/mobilenet_digits-supernet/supernet]`.
Searches live in `--out` and are resumed, as results_table's are. The JSON records the CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report import save_figure, write_report
from results_table import RESULTS, _say, _share_supernet, mode_config

from adacomp.errors import AdacompError
from adacomp.platform.results.front import normalised_hypervolume
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.results.snapshot import SearchResult
from adacomp.platform.search.job import search
from adacomp.platform.table import format_table

STRATEGIES = ("rl", "random")


def learning_curve(records: Sequence[TrialRecord], window: int) -> list[dict[str, Any]]:
    """Per plan in the order it was proposed: its utility (None when it failed), the mean over
    the last `window` plans that have one, and the best so far."""
    curve: list[dict[str, Any]] = []
    seen: list[float] = []
    best = -math.inf
    for record in sorted(records, key=lambda r: r.number):
        value = None if record.failed or record.utility is None else float(record.utility)
        if value is not None:
            seen.append(value)
            best = max(best, value)
        recent = seen[-window:]
        curve.append(
            {
                "trial": record.number,
                "utility": value,
                "feasible": record.feasible,
                "mean": round(sum(recent) / len(recent), 5) if recent else None,
                "best": round(best, 5) if seen else None,
            }
        )
    return curve


def summary(curve: Sequence[dict[str, Any]], window: int) -> dict[str, Any]:
    """The first and the last window's mean utility and feasible share: did it learn?"""
    values = [p for p in curve if p["utility"] is not None]

    def mean(points: Sequence[dict[str, Any]], key: str) -> float | None:
        found = [float(p[key]) for p in points]
        return round(sum(found) / len(found), 5) if found else None

    first, last = values[:window], values[-window:]
    return {
        "plans": len(curve),
        "first_window_mean": mean(first, "utility"),
        "last_window_mean": mean(last, "utility"),
        "first_window_feasible": mean(first, "feasible"),
        "last_window_feasible": mean(last, "feasible"),
        "best": curve[-1]["best"] if curve else None,
    }


def plot(curves: dict[str, list[dict[str, Any]]], title: str, path: Path) -> None:
    """Mean utility over a sliding window per strategy (solid) and the running best (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        points = [p for p in curve if p["mean"] is not None]
        line = axes.plot([p["trial"] for p in points], [p["mean"] for p in points], label=f"{label} (mean)")
        axes.plot(
            [p["trial"] for p in points],
            [p["best"] for p in points],
            linestyle=":",
            color=line[0].get_color(),
            label=f"{label} (best)",
        )
    save_figure(figure, axes, ("plan", "utility"), title, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mobilenet_digits")
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--supernet-steps", type=int, default=None, help="ensemble steps (default: per task)")
    parser.add_argument("--supernet-from", type=Path, default=None, help="a trained supernet's folder")
    parser.add_argument("--window", type=int, default=15, help="plans in the sliding mean")
    parser.add_argument("--out", type=Path, default=RESULTS / "rl_runs")
    parser.add_argument("--json", type=Path, default=RESULTS / "rl_curve.json")
    args = parser.parse_args(argv)
    if args.trials < 2 or args.window < 1:
        print("rl_curve: --trials must be at least 2 and --window at least 1")
        return 2
    if args.supernet_from is not None and not (args.supernet_from / "supernet.safetensors").is_file():
        print(f"rl_curve: --supernet-from {args.supernet_from}: no supernet.safetensors there")
        return 2
    started = time.perf_counter()
    results: dict[str, SearchResult] = {}
    trained: Path | None = None
    try:
        for strategy in STRATEGIES:
            config = mode_config(
                args.task,
                args.out,
                "supernet",
                trials=args.trials,
                supernet_steps=args.supernet_steps,
                name=f"{args.task.replace(':', '-').replace('.', '-')}-{strategy}",
                strategy=strategy,
                polish={"top_k": 0},  # the curve is the search's own; no fine-tune anywhere
            )
            source = args.supernet_from or trained
            if source is not None:
                _share_supernet(source, config)
            results[strategy] = search(config, resume=True, progress=False, log=_say(config.name))
            trained = config.output.dir / config.name / "supernet"  # the next search shares it
    except AdacompError as error:
        print(f"rl_curve: {error}")
        return 2
    reference = results["rl"].baseline
    report: dict[str, Any] = {
        "task": args.task,
        "trials": args.trials,
        "window": args.window,
        "strategies": {},
    }
    for strategy, result in results.items():
        curve = learning_curve(result.records, args.window)
        hypervolume = normalised_hypervolume(results["rl"].config, result.records, reference)
        report["strategies"][strategy] = {
            **summary(curve, args.window),
            "hypervolume": round(hypervolume, 5),
            "curve": curve,
        }
    png = args.json.with_name(f"{args.json.stem}_{args.task.replace(':', '-')}.png")
    plot({s: r["curve"] for s, r in report["strategies"].items()}, f"{args.task}: utility per plan", png)
    report["plot"] = str(png)
    report["seconds"] = round(time.perf_counter() - started, 1)
    headers = ["strategy", "plans", "mean utility, first", "mean utility, last", "feasible first/last",
               "best utility", "hypervolume"]  # fmt: skip
    rows = []
    for strategy, found in report["strategies"].items():
        rows.append(
            [strategy, str(found["plans"]), f"{found['first_window_mean']}", f"{found['last_window_mean']}",
             f"{found['first_window_feasible']} / {found['last_window_feasible']}", f"{found['best']}",
             f"{found['hypervolume']:.4f}"]
        )  # fmt: skip
    print(format_table(headers, rows))
    print(f"curve: {png}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search benchmarks: strategies' hypervolume and best feasible utility against trials (nsga2,
tpe, random and the rl agent at an equal budget of evaluated plans), the platform's per-trial overhead,
and the speed-up from running trials in parallel. Prints tables, writes
benchmarks/results/search_bench.json (`--compare`: search_compare.json and search_curves.png).

    python benchmarks/search_bench.py                 # 16 trials x 3 seeds x 4 strategies, ~20 min on 2 cores
    python benchmarks/search_bench.py --trials 8 --seeds 1
    python benchmarks/search_bench.py --compare        # today's flat search vs the new one, MobileNetV2
    python benchmarks/search_bench.py --platform-only  # per-trial overhead and 1 -> 2 trials' speed-up
    python benchmarks/search_bench.py --results /tmp/sb  # every file written under /tmp/sb instead

Every search uses the digits task, emulated targets only (so both cores train), one Ray
instance for all runs (the caller's, when this process has one already: it is left running),
and its own MLflow store under <results>/search_runs/ (emptied first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import ray

from adacomp.device_farm import Farm
from adacomp.platform.evaluate.trial import TrialContext, baseline_metrics, evaluate_plan
from adacomp.platform.results.front import hypervolume_history
from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search.job import search
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies.plan_space import plan_from_params, suggest
from adacomp.platform.table import format_table
from adacomp.search_spaces import build_space
from adacomp.tasks import load_task, pretrained_model

RESULTS = Path(__file__).parent / "results"  # --results changes it
RUNS = "search_runs"  # under the results folder: every search's directory and MLflow store


# Rows of the strategy table: the registered strategy and its settings.
ARMS: dict[str, dict[str, Any]] = {
    "nsga2": {"strategy": "nsga2"},
    "tpe": {"strategy": "tpe"},
    "random": {"strategy": "random"},
    "rl": {"strategy": "rl"},
    "rl-noshaping": {"strategy": "rl", "rl": {"shaping": False}},  # with --ablation
}


def config(
    name: str, strategy: str, trials: int, seed: int, concurrency: int, runs: Path, **changes: Any
) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": name,
            "task": "digits",
            "targets": ["pixel4", "raspberrypi4"],
            "objectives": [
                {"metric": "accuracy"},
                {"metric": "latency", "target": "raspberrypi4"},
                {"metric": "storage"},
            ],
            "constraints": [{"metric": "accuracy_drop", "max": 2.0}],
            "utility": {"accuracy": 1.0, "latency": 0.3, "storage": 0.3},
            "finetune": {"steps": 30},
            "trials": trials,
            "concurrency": concurrency,
            "strategy": strategy,
            "seed": seed,
            "output": {"dir": str(runs)},
            **changes,
        }
    )


def trial_phase_seconds(records: list[TrialRecord]) -> float:
    """From the first trial's start to the last one's end (startup and wrap-up excluded)."""
    first_start = min(r.finished_at - r.seconds for r in records)
    return max(r.finished_at for r in records) - first_start


def best_utility_history(records: list[TrialRecord]) -> list[float]:
    """Best feasible utility after each trial (NaN until one is feasible)."""
    best, history = float("nan"), []
    for record in sorted(records, key=lambda r: r.number):
        if record.feasible and record.utility is not None and not record.utility <= best:
            best = record.utility
        history.append(best)
    return history


def strategies_table(
    arms: list[str], trials: int, seeds: int, checkpoints: list[int], runs: Path
) -> dict[str, Any]:
    rows, data = [], {}
    for arm in arms:
        settings = dict(ARMS[arm])
        strategy = settings.pop("strategy")
        curves, bests, seconds, episodes = [], [], [], []
        for seed in range(seeds):
            cfg = config(f"hv-{arm}-{seed}", strategy, trials, seed, 2, runs, **settings)
            result = search(cfg, progress=False)
            curves.append(hypervolume_history(result.config, result.records, result.baseline))
            bests.append(best_utility_history(result.records))
            seconds.append(result.seconds)
            played = _episodes(result.out_dir)
            episodes.append(played)
            extra = f", {played} episodes" if played else ""
            print(f"  {arm} seed {seed}: hv {curves[-1][-1]:.4f}, {result.seconds:.0f} s{extra}", flush=True)
        hv = [statistics.mean(c[n - 1] for c in curves) for n in checkpoints]
        best = [statistics.mean(b[n - 1] for b in bests) for n in checkpoints]  # NaN if a seed had none
        spread = statistics.pstdev(c[-1] for c in curves)
        rows.append(
            [arm, *(f"{m:.4f}" for m in hv), f"{spread:.4f}", *(f"{b:.4f}" for b in best),
             f"{statistics.mean(seconds):.0f}"]
        )  # fmt: skip
        data[arm] = {
            "hypervolume_curves": curves,
            "best_utility_curves": bests,
            "seconds": seconds,
            "episodes": episodes,
        }
    headers = [
        "strategy",
        *(f"hv@{n}" for n in checkpoints),
        "sd(hv@end)",
        *(f"best U@{n}" for n in checkpoints),
        "s/search",
    ]
    print(format_table(headers, rows))
    return data


def _episodes(out_dir: Path) -> int:
    """Episodes the RL agent played (its MLflow metric); 0 for other strategies."""
    import mlflow

    state = json.loads((out_dir / "search.json").read_text())
    client = mlflow.MlflowClient(state["tracking_uri"])
    history = client.get_metric_history(state["parent_run_id"], "rl_episodes")
    return int(history[-1].value) if history else 0


def plain_optuna_loop(trials: int, runs: Path) -> dict[str, float]:
    """The same trials (same sampler, same seed, same plans) without Ray, Tune or MLflow."""
    import torch

    torch.set_num_threads(1)  # a Tune trial gets 1 CPU, so its torch runs 1 thread: same work
    cfg = config("plain", "random", trials, 0, 1, runs)
    task = load_task("digits")
    model = pretrained_model(task)
    farm = Farm()
    ctx = TrialContext(cfg, task, model, farm, cfg.measure, task.calibration_batches())
    ctx.baseline = baseline_metrics(ctx)
    space = build_space(model, task.example_input(2))
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))  # fmt: skip
    started = time.perf_counter()
    compute = 0.0
    for _ in range(trials):
        trial = study.ask()
        suggest(trial, space)
        result = evaluate_plan(ctx, plan_from_params(trial.params, space), seed=trial.number)
        compute += result.seconds
        if result.failed:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            m = result.metrics
            study.tell(trial, [m["accuracy"], m["latency_raspberrypi4"], m["storage"]])  # type: ignore[list-item]
    wall = time.perf_counter() - started
    return {"wall_per_trial": wall / trials, "compute_per_trial": compute / trials}


# What the overhead and speed-up rows measure: the platform around whole trials. Staged fine-tunes
# would count a plan stopped early at its stop, and the polish runs after the trial phase.
PLATFORM_ONLY: dict[str, Any] = {"fidelity": {"rungs": 1}, "polish": {"top_k": 0}}


def overhead_table(trials: int, runs: Path) -> dict[str, Any]:
    plain = plain_optuna_loop(trials, runs)
    result = search(config("overhead", "random", trials, 0, 1, runs, **PLATFORM_ONLY), progress=False)
    phase = trial_phase_seconds(result.records)
    platform = {
        "wall_per_trial": phase / trials,
        "compute_per_trial": statistics.mean(r.seconds for r in result.records),
        "startup_and_wrapup": result.seconds - phase,
    }
    rows = [
        ["plain Optuna loop", plain["wall_per_trial"], plain["compute_per_trial"],
         plain["wall_per_trial"] - plain["compute_per_trial"]],
        ["adacomp search (Ray Tune + MLflow)", platform["wall_per_trial"], platform["compute_per_trial"],
         platform["wall_per_trial"] - platform["compute_per_trial"]],
    ]  # fmt: skip
    print(format_table(["loop", "wall s/trial", "trial work s", "overhead s/trial"], rows))
    print(f"  adacomp one-off startup + wrap-up: {platform['startup_and_wrapup']:.1f} s")
    return {"plain": plain, "platform": platform}


def speedup_table(trials: int, runs: Path) -> dict[str, Any]:
    walls = {}
    for concurrency in (1, 2):
        cfg = config(f"speedup-{concurrency}", "random", trials, 0, concurrency, runs, **PLATFORM_ONLY)
        result = search(cfg, progress=False)
        walls[concurrency] = trial_phase_seconds(result.records)
    rows = [[c, walls[c], walls[1] / walls[c]] for c in (1, 2)]
    print(format_table(["concurrent trials", "trial phase s", "speed-up"], rows))
    return {str(c): walls[c] for c in walls}


# --- today's flat search against the new one, at equal compute --------------------------------
def compare_config(
    task: str, name: str, seed: int, trials: int, steps: int, flat: bool, runs: Path
) -> SearchConfig:
    """The MobileNetV2 example's usage (two phones, accuracy floor, latency budget); `flat` is the
    search as it was: one choice per layer, no sensitivity bounds, every plan fine-tuned in full."""
    changes: dict[str, Any] = {
        "targets": ["pixel4", "snapdragon450"],  # emulated: both cores train
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "snapdragon450"},
            {"metric": "storage"},
        ],
        "constraints": [
            {"metric": "accuracy_drop", "max": 3.0},
            {"metric": "latency", "target": "snapdragon450", "max": 15},
        ],
        "utility": {"accuracy": 1.0, "latency": 0.5, "storage": 0.2},
        "finetune": {"steps": steps, "distill": True},
        "polish": {"top_k": 0},  # the search alone; the polish is measured apart
    }
    if flat:
        changes.update(
            space={"grouping": "layer", "sensitivity": False}, cost_first=False, fidelity={"rungs": 1}
        )
    cfg = config(name, "nsga2", trials, seed, 2, runs, **changes)
    return cfg.model_copy(update={"task": task})


def compute_curve(result: Any, started: float) -> list[tuple[float, float]]:
    """(seconds since the search was called, hypervolume) after each finished trial: startup, the
    sensitivity analysis and every trial are compute; both arms are timed the same way."""
    ordered = sorted(result.records, key=lambda r: r.finished_at)
    history = hypervolume_history(result.config, ordered, result.baseline)
    return [(r.finished_at - started, hv) for r, hv in zip(ordered, history, strict=True)]


def hv_at(curve: list[tuple[float, float]], seconds: float) -> float:
    """The hypervolume a search had reached `seconds` into its run (0 before its first trial)."""
    return max((hv for t, hv in curve if t <= seconds), default=0.0)


def infeasible_share(records: list[TrialRecord]) -> float:
    """Share of trial compute spent on plans that did not end feasible (failed, stopped early,
    over a budget): the work a search threw away."""
    total = sum(r.seconds for r in records if r.duplicate_of is None)
    wasted = sum(r.seconds for r in records if r.duplicate_of is None and not r.feasible)
    return wasted / total if total else 0.0


def compare_table(
    task: str, seeds: int, new_trials: int, flat_trials: int, steps: int, results: Path
) -> dict[str, Any]:
    rows, data = [], []
    for seed in range(seeds):
        pretrained_model(load_task(task), seed=seed)  # each seed's baseline, before any clock starts
        runs: dict[str, dict[str, Any]] = {}
        for arm, trials in (("new", new_trials), ("flat", flat_trials)):
            cfg = compare_config(
                task, f"cmp-{arm}-{seed}", seed, trials, steps, flat=arm == "flat", runs=results / RUNS
            )
            started = time.time()
            result = search(cfg, progress=False)
            curve = compute_curve(result, started)
            runs[arm] = {
                "curve": curve,
                "seconds": result.seconds,
                "hypervolume": result.hypervolume,
                "infeasible_share": infeasible_share(result.records),
                "stopped_early": sum(r.stopped_at is not None for r in result.records),
                "cost_infeasible": sum(
                    (r.reason or "").startswith("cost-infeasible") for r in result.records
                ),
                "trials": len(result.records),
            }
            print(f"  {arm} seed {seed}: hv {result.hypervolume:.4f}, {result.seconds:.0f} s", flush=True)
        t_new = runs["new"]["curve"][-1][0]
        flat_curve = runs["flat"]["curve"]
        row = {
            "seed": seed,
            "new_seconds": t_new,
            "new_hv": runs["new"]["hypervolume"],
            "flat_hv_same_compute": hv_at(flat_curve, t_new),
            "flat_hv_3x_compute": hv_at(flat_curve, 3 * t_new),
            "flat_seconds": flat_curve[-1][0],
            "flat_reached_3x": flat_curve[-1][0] >= 3 * t_new,
            "new_infeasible_share": runs["new"]["infeasible_share"],
            "flat_infeasible_share": runs["flat"]["infeasible_share"],
        }
        data.append({**row, "runs": runs})
        rows.append(
            [seed, f"{t_new:.0f}", f"{row['new_hv']:.4f}", f"{row['flat_hv_same_compute']:.4f}",
             f"{row['flat_hv_3x_compute']:.4f}" + ("" if row["flat_reached_3x"] else " (ran out)"),
             f"{100 * row['new_infeasible_share']:.0f}%", f"{100 * row['flat_infeasible_share']:.0f}%",
             f"{runs['new']['stopped_early']}/{runs['new']['cost_infeasible']}"]
        )  # fmt: skip
    mean = {k: statistics.mean(float(d[k]) for d in data) for k in data[0] if k not in ("seed", "runs")}
    rows.append(
        ["mean", f"{mean['new_seconds']:.0f}", f"{mean['new_hv']:.4f}", f"{mean['flat_hv_same_compute']:.4f}",
         f"{mean['flat_hv_3x_compute']:.4f}", f"{100 * mean['new_infeasible_share']:.0f}%",
         f"{100 * mean['flat_infeasible_share']:.0f}%", ""]
    )  # fmt: skip
    headers = ["seed", "new s", "new hv", "flat hv @1x", "flat hv @3x", "new wasted", "flat wasted",
               "new stopped/over budget"]  # fmt: skip
    print(format_table(headers, rows))
    _plot_curves(data, results / "search_curves.png")
    return {"task": task, "new_trials": new_trials, "flat_trials": flat_trials, "steps": steps,
            "seeds": data, "mean": mean}  # fmt: skip


def _plot_curves(data: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for d in data:
        for arm, colour in (("new", "tab:blue"), ("flat", "tab:grey")):
            t, hv = zip(*d["runs"][arm]["curve"], strict=True)
            label = f"{arm} (grouped, cost first, multi-fidelity)" if arm == "new" else "flat NSGA-II (today)"
            axes.step(t, hv, where="post", color=colour, alpha=0.8, label=label if d["seed"] == 0 else None)
    axes.set_xlabel("compute: wall-clock seconds since the search started (2 cores)")
    axes.set_ylabel("hypervolume (normalised)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"  curves: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--overhead-trials", type=int, default=8)
    parser.add_argument("--speedup-trials", type=int, default=12)
    parser.add_argument(
        "--strategies-only", action="store_true", help="only the hypervolume table (skip overhead, speed-up)"
    )
    parser.add_argument(
        "--platform-only", action="store_true", help="only the overhead and speed-up tables (skip strategies)"
    )
    parser.add_argument("--ablation", action="store_true", help="add the rl agent without reward shaping")
    parser.add_argument("--arms", help="comma-separated rows to run (default: all of nsga2,tpe,random,rl)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="only today's flat search against the new one, at equal compute",
    )
    parser.add_argument("--compare-task", default="mobilenet_digits")
    parser.add_argument("--compare-trials", type=int, default=24, help="trials of the new search")
    parser.add_argument("--compare-flat-trials", type=int, default=48, help="trials of the flat search")
    parser.add_argument("--compare-steps", type=int, default=60, help="fine-tune steps per plan")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help=f"folder of the JSON, the curves and the searches (<results>/{RUNS}/, emptied first); "
        "default benchmarks/results",
    )
    args = parser.parse_args(argv)
    results: Path = args.results
    runs = results / RUNS
    shutil.rmtree(runs, ignore_errors=True)
    results.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One Ray for every search (each joins it); a caller's Ray is used and left running.
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
    try:
        report = run(args, results)
    finally:
        if started_ray:
            ray.shutdown()
    path = results / ("search_compare.json" if args.compare else "search_bench.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path}")
    return 0


def run(args: argparse.Namespace, results: Path) -> dict[str, Any]:
    """The tables `args` asks for, as the report written."""
    runs = results / RUNS
    if args.compare:
        print(
            f"## flat NSGA-II (today) against grouped + cost first + multi-fidelity, on {args.compare_task}"
            f" ({args.seeds} seeds): hypervolume at the new search's compute and at three times it"
        )
        return {"compare": compare_table(args.compare_task, args.seeds, args.compare_trials,
                                         args.compare_flat_trials, args.compare_steps, results)}  # fmt: skip
    checkpoints = sorted({max(1, args.trials // 4), args.trials // 2, 3 * args.trials // 4, args.trials})
    report: dict[str, Any] = {"trials": args.trials, "seeds": args.seeds}
    if not args.platform_only:
        print(f"## hypervolume against trials ({args.trials} trials, {args.seeds} seeds, mean)")
    arms = ["nsga2", "tpe", "random", "rl", *(["rl-noshaping"] if args.ablation else [])]
    if args.arms:
        arms = [arm for arm in args.arms.split(",") if arm in ARMS]
    if not args.platform_only:
        report["strategies"] = strategies_table(arms, args.trials, args.seeds, checkpoints, runs)
    if not args.strategies_only:
        print(f"\n## per-trial overhead ({args.overhead_trials} trials, random sampler, 1 at a time)")
        report["overhead"] = overhead_table(args.overhead_trials, runs)
        print(f"\n## speed-up from concurrent trials ({args.speedup_trials} trials, 2 cores)")
        report["speedup"] = speedup_table(args.speedup_trials, runs)
    return report


if __name__ == "__main__":
    sys.exit(main())

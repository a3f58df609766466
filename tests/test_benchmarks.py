"""The benchmark scripts run, print their table and write the JSON they promise (tiny budgets
here: the numbers themselves are the benchmarks' job, never asserted in tests; the full runs are
`make bench`). Everything a script writes goes under the test's tmp folder, never the checkout.

Each script runs in this process through its `main(argv)`, what `python benchmarks/<script>.py`
calls (no interpreter to start, no torch, Ray or MLflow to import again); one, the cheapest,
also runs as a user runs it, in an interpreter of its own. The two that search join the suite's
shared Ray (conftest) as every in-process search does; run alone, each starts and stops its own
(search_bench.py leaves a Ray it found running)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def _run(script: str, *args: str) -> str:
    """The script as a user runs it; the repo root on the path for the tests' own task module."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _script(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module, imported with its folder first on the path as when it
    is run (its sibling modules, report and host_timing, import the same way)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def _main(capsys: pytest.CaptureFixture[str], name: str, *args: str, code: int = 0) -> str:
    """`python benchmarks/<name>.py args...` in this process: its exit code, then its stdout."""
    returned = _script(name).main(list(args))
    out, err = capsys.readouterr()
    assert returned == code, (out + err)[-2000:]
    return out


@pytest.mark.slow
def test_baselines_compares_the_budget_with_a_longer_run(tmp_path: Path) -> None:
    """The one script run in an interpreter of its own, as `make bench` and the README run them."""
    out = _run(
        "baselines.py",
        "--tasks",
        "digits",
        "--factor",
        "1.5",
        "--seeds",
        "0",
        "--json",
        str(tmp_path / "b.json"),
    )
    assert "digits" in out and "gain pt" in out
    report = json.loads((tmp_path / "b.json").read_text())
    (row,) = report["tasks"]
    assert row["task"] == "digits" and 0.9 < row["budget_test_accuracy"] <= 1.0
    assert row["seeds"] == [0] and row["budget_test_accuracies"] == [row["budget_test_accuracy"]]
    assert row["one_image_pt"] == pytest.approx(100 / row["test_images"], abs=1e-3)
    assert isinstance(row["converged"], bool) and row["gain_pt"] == pytest.approx(
        100 * (row["longer_test_accuracy"] - row["budget_test_accuracy"]), abs=0.01
    )


def test_baselines_refuses_an_unknown_task_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _main(capsys, "baselines", "--tasks", "nope", "--json", str(tmp_path / "b.json"), code=2)
    assert "unknown nope" in out and len(out.splitlines()) == 1
    bad = _main(capsys, "baselines", "--tasks", "digits", "--seeds", "a", code=2)
    assert "--seeds: expected comma-separated integers" in bad and len(bad.splitlines()) == 1
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_latency_choices_times_every_variant_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One pruning ratio and no exact-count variant (each pruned graph is one more export)."""
    path = tmp_path / "l.json"
    out = _main(
        capsys, "latency_choices", "--tasks", "shapes_resnet", "--rounds", "1", "--runs", "3",
        "--prune-ratios", "0.5", "--exact-ratios", "", "--json", str(path),
    )  # fmt: skip
    assert "int8 adacomp plan" in out and "channel_prune 0.5" in out and "exact counts" not in out
    (task,) = json.loads(path.read_text())["tasks"]
    names = [v["variant"] for v in task["variants"]]
    assert names[0] == "fp32 opt=all" and len(names) == len(set(names)) >= 10
    assert all(v["median_ms"] > 0 and v["bytes"] > 0 for v in task["variants"])
    assert task["variants"][0]["speedup_vs_fp32"] == 1.0


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_results_table_reports_both_modes_at_equal_compute_and_compares_combined_with_single_fronts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--evaluation both` on the tiny task: a two-trial search in each mode (the supernet mode's
    supernet trained 10 steps), every finished trial counted as "within" the drop (--within-pt
    100) so the best-model path always runs; one technique alone (int8 only, in the supernet
    mode, on the shared supernet) with one trial against the combined search's first; both
    modes' hypervolume over compute, plotted; the CPU recorded."""
    task = "tests.platform.tiny_task:tiny_digits"
    path = tmp_path / "r.json"
    out = _main(
        capsys, "results_table", "--tasks", task, "--trials", "2", "--within-pt", "100", "--evaluation", "both",
        "--supernet-steps", "10", "--singles-task", task, "--singles", "quantize", "--single-trials", "1",
        "--rounds", "1", "--runs", "3", "--finetune-steps", "10", "--out", str(tmp_path / "runs"),
        "--json", str(path),
    )  # fmt: skip
    assert "host (paired)" in out and "all combined" in out and "quantize" in out
    assert "supernet mode" in out and "finetune mode" in out and "hypervolume at equal compute" in out
    report = json.loads(path.read_text())
    assert report["cpu"]["model"] and isinstance(report["cpu"]["isa"], list)
    for key, mode in (("tasks", "finetune"), ("supernet_tasks", "supernet")):
        row = report[key][task]
        assert row["evaluation"] == mode and 0.5 < row["baseline_accuracy"] <= 1.0 and row["trials"] == 2
        assert row["plans_per_minute"] > 0
        best = row["best"]
        assert best["host_latency_ratio"] == pytest.approx(best["baseline_ms"] / best["model_ms"], rel=0.01)
        assert best["storage_ratio"] > 0 and isinstance(best["accuracy_drop_pt"], float)
        assert set(best) >= {
            "pixel4_latency_ratio",
            "snapdragon450_energy_ratio",
            "plan",
            "search_host_latency_ratio",
        }
    singles = report["singles"]
    assert singles["evaluation"] == "supernet"
    assert set(singles["single_hypervolumes"]) == {"quantize"} and singles["trials_each"] == 1
    assert singles["combined_trials_compared"] == 1
    dominates = singles["combined_hypervolume"] > singles["single_hypervolumes"]["quantize"]
    assert report["supernet_tasks"][task]["combos_dominate_singles"] is dominates
    assert report["tasks"][task]["combos_dominate_singles"] is None
    single_dir = tmp_path / "runs" / "tests-platform-tiny_task-tiny_digits-supernet-only-quantize"
    assert (single_dir / "trials.jsonl").exists() and (
        single_dir / "supernet" / "supernet.safetensors"
    ).exists()
    equal = report["equal_compute"][task]
    assert set(equal["curves"]) == {"supernet", "finetune"}
    assert equal["equal_compute_s"] == min(equal["total_compute_s"].values()) > 0
    for mode, curve in equal["curves"].items():
        times = [t for t, _ in curve]
        assert times == sorted(times) and len(curve) >= 2, mode  # each trial, then the polish
        assert equal["hypervolume_final"][mode] == curve[-1][1]
    assert Path(equal["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The supernet-mode search's directory is what supernet_throughput reads: stage costs and
    # BatchNorm re-estimation at 1 and 2 batches against 2, on its trained supernet.
    searched = tmp_path / "runs" / "tests-platform-tiny_task-tiny_digits-supernet"
    memo = os.environ.get("ADACOMP_EXPORT_MEMO_MIB")
    stages = _main(
        capsys, "supernet_throughput", "--search", str(searched), "--configs", "3", "--bn", "1,2",
        "--json", str(tmp_path / "t.json"),
    )  # fmt: skip
    assert "BN re-estimation, 2 batches" in stages and "kendall_tau" in stages
    throughput = json.loads((tmp_path / "t.json").read_text())
    assert throughput["cpu"]["isa"] is not None and throughput["configurations"] == 3
    assert isinstance(throughput["cpu"]["isa"], list) and throughput["batch"] == 64
    assert (
        os.environ.get("ADACOMP_EXPORT_MEMO_MIB") == memo
    )  # it timed exports with the memo off, then gave it back
    reference = throughput["bn_agreement"][-1]
    assert reference["bn_batches"] == 2 and reference["mean_abs_diff_pt"] == 0
    assert {row["stage"] for row in throughput["stages"]} >= {"extract", "export int8", "ORT accuracy"}


def test_supernet_throughput_refuses_a_folder_without_a_trained_supernet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _main(capsys, "supernet_throughput", "--search", str(tmp_path), code=2)
    assert out.strip() == (
        f"supernet_throughput: --search {tmp_path}: expected a search directory with a trained supernet"
    )
    assert "--bn" in _main(capsys, "supernet_throughput", "--search", str(tmp_path), "--bn", "x", code=2)


def test_hypervolume_at_a_time_is_the_last_point_reached() -> None:
    equal_compute = _script("equal_compute")
    curve = [(10.0, 0.1), (20.0, 0.3), (35.0, 0.2)]
    assert equal_compute.at(curve, 5.0) == 0.0
    assert equal_compute.at(curve, 10.0) == 0.1
    assert equal_compute.at(curve, 34.9) == 0.3
    assert equal_compute.at(curve, 1e9) == 0.2


def test_results_table_refuses_a_comparison_task_it_does_not_search(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _main(capsys, "results_table", "--tasks", "digits", "--singles-task", "x", code=2)
    assert "--singles-task 'x' is not among --tasks" in out
    out = _main(
        capsys, "results_table", "--tasks", "digits", "--singles-task", "", "--finetune-steps", "0", code=2
    )
    assert "--finetune-steps: expected a positive number of steps, got 0" in out
    out = _main(
        capsys, "results_table", "--tasks", "digits", "--singles-task", "", "--supernet-steps", "0", code=2
    )
    assert "--supernet-steps: expected a positive number of steps, got 0" in out


def test_results_table_prints_a_task_with_no_trial_within_the_drop_and_its_closest_trial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A search whose trials all lose too much accuracy (the flat MobileNetV2 search did): the
    table keeps its columns and shows the nearest trial instead of failing."""
    results_table = _script("results_table")
    closest = {
        "accuracy_drop_pt": 4.17, "storage_ratio": 12.9, "host_latency_ratio": 0.91,
        "search_host_latency_ratio": 0.9, "plan": "{'layers': ...}",
        **{f"{p}_{kind}_ratio": 1.1 for p in results_table.PHONES for kind in ("latency", "energy")},
    }  # fmt: skip
    row = {"task": "t", "baseline_accuracy": 0.99, "best": None, "smallest": None, "closest": closest}
    results_table.print_tables([row], None)
    lines = capsys.readouterr().out.splitlines()
    assert "no trial within the drop allowed" in lines[2] and lines[2].split()[-1] == "-"
    assert lines[3].split()[:4] == ["t", "99.00", "closest", "+4.17"] and "12.9x" in lines[3]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_search_bench_compares_the_flat_search_with_the_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`search_bench.py --compare` (README), on the tiny task: both arms run, the table and the
    curves come out, the JSON holds each seed's hypervolume at 1x and 3x the new search's compute.
    `--results` keeps the JSON, the curves and both searches under tmp_path."""
    out = _main(
        capsys, "search_bench", "--compare", "--compare-task", "tests.platform.tiny_task:tiny_digits",
        "--seeds", "1", "--compare-trials", "4", "--compare-flat-trials", "5", "--compare-steps", "9",
        "--results", str(tmp_path),
    )  # fmt: skip
    assert "flat hv @3x" in out and "new wasted" in out
    report = json.loads((tmp_path / "search_compare.json").read_text())["compare"]
    (seed,) = report["seeds"]
    assert seed["flat_hv_3x_compute"] >= seed["flat_hv_same_compute"] >= 0.0
    assert 0.0 <= seed["new_infeasible_share"] <= 1.0 and seed["runs"]["new"]["trials"] == 4
    assert seed["runs"]["flat"]["trials"] == 5
    assert (tmp_path / "search_curves.png").stat().st_size > 0
    assert {p.name for p in (tmp_path / "search_runs").iterdir()} >= {"cmp-new-0", "cmp-flat-0"}


@pytest.mark.slow
def test_farm_bench_reports_calibration_unseen_few_shot_and_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _main(
        capsys, "farm_bench",
        *("--calibration-models", "8", "--held-out", "2", "--rounds", "1", "--unseen", "2"),
        *("--shots", "2", "--fewshot-held-out", "2", "--speed-seconds", "0.05"),
        *("--out", str(tmp_path / "f.json")),
    )  # fmt: skip
    assert "host unseen architectures" in out and "few-shot: 2 threads" in out and "noise floor" in out
    report = json.loads((tmp_path / "f.json").read_text())
    # Every model asked for was fitted on (checked), or left out as never measured without noise
    # (a core kept busy beside this test can make two of eight so).
    calibration = report["calibration"]
    assert calibration["models"] + calibration["left_out"]["models"] == 8 and calibration["models"] >= 2
    assert calibration["held_out"] + calibration["left_out"]["held_out"] == 2 and calibration["held_out"] >= 1
    assert len(report["unseen"]["rows"]) == 2 and report["few_shot"]["mode"] == "few-shot"
    assert all(row["cached_per_s"] > 0 and row["new_per_s"] > 0 for row in report["emulator_speed"])
    assert len(report["emulator_speed"]) == 6  # three models, each on two profiles
    assert calibration["seconds"] > 0 and report["meta"]["identity"]["describe"]  # what the host was
    assert set(report["per_family"]) == {"held_out", "unseen"} and "family (emulator)" in out


def test_rl_curve_means_the_last_window_and_keeps_the_running_best() -> None:
    rl_curve = _script("rl_curve")
    from adacomp.platform.results.ledger import TrialRecord
    from adacomp.search_spaces import CompressionPlan

    def record(number: int, utility: float | None, failed: bool = False) -> TrialRecord:
        violations = (0.0,) if number % 2 == 0 else (1.0,)
        return TrialRecord(
            number, CompressionPlan(), metrics={}, utility=utility, violations=violations, failed=failed
        )

    records = [record(2, 0.5), record(0, 0.1), record(1, None, failed=True), record(3, 0.3)]
    curve = rl_curve.learning_curve(records, window=2)
    assert [p["trial"] for p in curve] == [0, 1, 2, 3]  # in the order proposed
    assert [p["mean"] for p in curve] == [0.1, 0.1, 0.3, 0.4]  # a failed plan adds nothing
    assert [p["best"] for p in curve] == [0.1, 0.1, 0.5, 0.5]
    found = rl_curve.summary(curve, window=2)
    assert found["first_window_mean"] == 0.3 and found["last_window_mean"] == 0.4  # (0.1, 0.5), (0.5, 0.3)
    assert found["first_window_feasible"] == 1.0 and found["last_window_feasible"] == 0.5
    assert found["plans"] == 4 and found["best"] == 0.5


def test_rl_curve_refuses_a_folder_without_a_supernet_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _main(capsys, "rl_curve", "--supernet-from", str(tmp_path), "--out", str(tmp_path), code=2)
    assert out.strip() == f"rl_curve: --supernet-from {tmp_path}: no supernet.safetensors there"


def test_results_table_throughput_is_trials_over_the_span_they_ran_in() -> None:
    results_table = _script("results_table")
    from adacomp.platform.results.ledger import TrialRecord
    from adacomp.search_spaces import CompressionPlan

    def record(number: int, started: float, seconds: float) -> TrialRecord:
        plan = CompressionPlan()
        return TrialRecord(
            number,
            plan,
            metrics={},
            utility=None,
            violations=(),
            seconds=seconds,
            finished_at=started + seconds,
        )

    records = [record(0, 100.0, 5.0), record(1, 105.0, 5.0), record(2, 110.0, 20.0)]
    assert results_table.plans_per_minute(records) == 6.0  # 3 trials from 100 s to 130 s
    assert results_table.plans_per_minute([]) is None

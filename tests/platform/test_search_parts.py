"""The search's parts without Ray: ledger, searcher bookkeeping, strategies, front, CLI errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.evaluate.pareto import dominates
from adacomp.platform.results.front import best_by_utility, normalised_hypervolume, pareto_front
from adacomp.platform.results.ledger import Ledger, TrialRecord
from adacomp.platform.search_config import SearchConfig, load_search_config
from adacomp.platform.strategies.optuna_searcher import ConstrainedOptunaSearch, fail_interrupted_trials
from adacomp.platform.strategies.registry import get_strategy, registered_strategies
from adacomp.search_spaces import CompressionPlan, Step

REPO = Path(__file__).resolve().parents[2]
CONFIG = SearchConfig.model_validate(
    {
        "name": "parts",
        "task": "digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "constraints": [{"metric": "accuracy_drop", "max": 1.0}],
    }
)
BASELINE = {"accuracy": 0.99, "latency_pixel4": 1.0, "accuracy_drop": 0.0, "storage": 1000.0}


def record(number: int, accuracy: float, latency: float, drop: float = 0.0, **kw: object) -> TrialRecord:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.05 + number / 1000)]})
    return TrialRecord(
        number=number,
        plan=plan,
        metrics={"accuracy": accuracy, "latency_pixel4": latency, "accuracy_drop": drop},
        utility=accuracy - latency,
        violations=(drop - 1.0,),
        **kw,  # type: ignore[arg-type]
    )


def test_ledger_round_trips_and_ignores_a_line_torn_by_a_kill(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "trials.jsonl")
    first, second = record(0, 0.9, 0.5), record(1, 0.8, 0.4, failed=True, reason="boom")
    ledger.append(first)
    with ledger.path.open("a") as f:
        f.write('{"number": 7, "plan": {"vers')  # the kill
    ledger.append(second)
    assert [r.to_dict() for r in ledger.load()] == [first.to_dict(), second.to_dict()]


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.01, 3), st.floats(0, 3)), min_size=1, max_size=25))
@settings(max_examples=60, deadline=None)
def test_front_is_brute_force_non_domination_over_feasible_trials(
    points: list[tuple[float, float, float]],
) -> None:
    records = [record(i, a, lat, drop) for i, (a, lat, drop) in enumerate(points)]
    front = {r.number for r in pareto_front(CONFIG, records)}
    feasible = [r for r in records if r.feasible]

    def key(r: TrialRecord) -> tuple[float, float]:
        return (-r.metrics["accuracy"], r.metrics["latency_pixel4"])  # type: ignore[operator]

    brute = {r.number for r in feasible if not any(dominates(key(q), key(r)) for q in feasible)}
    assert front == brute
    assert all(not r.feasible or r.number in front or any(dominates(key(q), key(r)) for q in feasible)
               for r in records)  # fmt: skip


def test_hypervolume_is_normalised_by_the_baseline_and_ignores_infeasible_trials() -> None:
    # accuracy 0.99/0.99 = 1 against reference 0, latency 0.5/1.0 against reference 2: area 1 * 1.5
    assert normalised_hypervolume(CONFIG, [record(0, 0.99, 0.5)], BASELINE) == pytest.approx(1.5)
    assert normalised_hypervolume(CONFIG, [record(0, 0.99, 0.5, drop=3.0)], BASELINE) == 0.0


def test_best_by_utility_skips_infeasible_failed_and_duplicates() -> None:
    records = [
        record(0, 0.99, 0.1, drop=5.0),  # best utility, infeasible
        record(1, 0.95, 0.5, failed=True),
        record(2, 0.97, 0.2, duplicate_of=3),
        record(3, 0.90, 0.5),
        record(4, 0.93, 0.5),
    ]
    best = best_by_utility(records)
    assert best is not None and best.number == 4


def test_the_printed_front_marks_the_registered_trial_and_shows_it_when_dominated() -> None:
    from dataclasses import replace

    from adacomp.platform.results.snapshot import format_front

    on_front = [record(0, 0.98, 0.5), record(1, 0.95, 0.3)]
    table = format_front(CONFIG, on_front, BASELINE)  # utility: accuracy - latency, trial 1 wins
    lines = table.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["baseline", "1", "0"] and lines[3].split()[1] == "*"
    assert lines[-1].startswith("* best feasible by the usage's utility")
    # the utility weighs a cost the objectives do not: the winner is dominated in them
    dominated = replace(record(2, 0.94, 0.6), utility=5.0)
    table = format_front(CONFIG, [*on_front, dominated], BASELINE)
    assert "2 (off the front) *" in table and table.count("*") == 2  # the row and the footnote
    # no finished trial: the baseline row alone, nothing marked, no footnote
    only_baseline = format_front(CONFIG, [], BASELINE).splitlines()
    assert len(only_baseline) == 3 and only_baseline[2].split()[0] == "baseline"
    assert "*" not in "\n".join(only_baseline)


def _searcher(storage: optuna.storages.BaseStorage) -> ConstrainedOptunaSearch:
    def define(trial: optuna.Trial) -> dict[str, object]:
        trial.suggest_float("x", 0, 1)
        return {"trial_number": trial.number}

    return ConstrainedOptunaSearch(
        space=define,
        metric=["accuracy", "latency_pixel4"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="s",
        storage=storage,
    )


def test_searcher_tells_failures_as_fail_and_passes_constraints_to_optuna() -> None:
    storage = optuna.storages.InMemoryStorage()
    searcher = _searcher(storage)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.suggest("c")
    searcher.on_trial_complete("a", {"accuracy": 0.9, "latency_pixel4": 1.0, "violations": [0.5, -1.0]})
    searcher.on_trial_complete("b", {"failed": 1.0, "reason": "plan does not build"})
    searcher.on_trial_complete("c", {"accuracy": float("nan"), "latency_pixel4": 1.0, "violations": []})
    trials = optuna.load_study(study_name="s", storage=storage).trials
    states = [t.state for t in trials]
    assert states == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.FAIL,
    ]
    assert trials[0].constraints == {"c0": 0.5, "c1": -1.0}
    assert trials[1].user_attrs["adacomp:failure"] == "plan does not build"


def test_interrupted_trials_are_failed_so_a_resumed_sampler_does_not_wait_on_them() -> None:
    storage = optuna.storages.InMemoryStorage()
    searcher = _searcher(storage)
    searcher.suggest("a")  # asked, never told: the search was killed
    assert fail_interrupted_trials(storage, "s") == 1
    trial = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert fail_interrupted_trials(storage, "missing") == 0


def test_strategies_are_registered_by_name_and_unknown_ones_are_refused() -> None:
    assert {"nsga2", "tpe", "random"} <= set(registered_strategies())
    with pytest.raises(AdacompError, match=r"^strategy: unknown strategy 'bayes'; expected one of: .*nsga2"):
        get_strategy("bayes")


@pytest.mark.parametrize(
    "name", ["digits.yaml", "mobilenet_digits.yaml", "mobilenet_gpu.yaml", "shapes_resnet.yaml"]
)
def test_shipped_example_configs_are_valid(name: str) -> None:
    from adacomp.device_farm.config import default_farm_config
    from adacomp.tasks import builtin_task_names

    config = load_search_config(REPO / "examples" / name)
    devices = {spec.name for spec in default_farm_config().devices}
    assert set(config.targets) <= devices
    assert config.task in builtin_task_names()
    get_strategy(config.strategy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("targets: [pixel4]", "targets: [pixel9]"),
            "targets: unknown device 'pixel9'; the default farm has:",
        ),
        (("strategy: random", "strategy: grid"), "strategy: unknown strategy 'grid'"),
        (("trials: 2", "trials: -1"), "trials: Input should be greater than or equal to 1"),
    ],
)
def test_search_cli_refuses_bad_configs_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], message: str
) -> None:
    text = """name: bad
task: digits
targets: [pixel4]
objectives: [{metric: accuracy}]
trials: 2
strategy: random
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(*change) + f"output: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists(), "nothing may be written before the config is valid"


def test_pareto_on_a_directory_without_a_search_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pareto", str(tmp_path)]) == 2
    assert "no search here" in capsys.readouterr().err


def test_ui_command_points_mlflow_at_the_project_store() -> None:
    from adacomp.platform.cli.main import build_parser
    from adacomp.platform.cli.search import ui_command

    args = build_parser().parse_args(["ui", "--dir", "somewhere", "--port", "5123"])
    command = ui_command(args)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    store = command[command.index("--backend-store-uri") + 1]
    assert store.startswith("sqlite:///") and store.endswith("somewhere/mlflow.db")
    assert command[command.index("--host") + 1] == "127.0.0.1"


def test_a_plan_evaluated_or_in_flight_is_proposed_as_a_duplicate_and_a_new_one_is_in_flight() -> None:
    """The define-by-run proposal of a plan the search has (finished, or running under another
    trial) is only `{duplicate_of: that trial}`, which the searcher asks past (issue 20 item 3);
    a new plan is proposed as a trial and is in flight from then on."""
    from types import SimpleNamespace

    from adacomp.platform.search.proposals import define_by_run
    from adacomp.platform.strategies._base import DUPLICATE_OF
    from adacomp.platform.strategies.plan_space import params_from_plan
    from adacomp.search_spaces import build_space
    from adacomp.tasks import load_task

    task = load_task("digits")
    space = build_space(task.build_model(), task.example_input(2))
    earlier = record(0, 0.97, 0.4)
    run = SimpleNamespace(by_hash={earlier.plan.hash: earlier}, in_flight={})
    define = define_by_run(CONFIG, run, space)  # type: ignore[arg-type]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for plan in (earlier.plan, CompressionPlan(), CompressionPlan()):
        study.enqueue_trial(params_from_plan(plan, space))
    again, fresh, running = define(study.ask()), define(study.ask()), define(study.ask())
    assert again == {DUPLICATE_OF: 0}
    assert CompressionPlan.from_json(fresh["plan"]) == CompressionPlan() and fresh["trial_number"] == 1
    assert run.in_flight == {CompressionPlan().hash: 1}
    assert running == {DUPLICATE_OF: 1}

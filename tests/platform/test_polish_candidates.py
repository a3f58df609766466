"""Which plans of the front a search polishes: the best by utility; in supernet mode plans spread
along each cost objective of the front (fastest, smallest, most accurate first), reaching
`polish.headroom` points past the accuracy constraint (its trials were never fine-tuned: the
polish is where their accuracy comes back, and the fastest plans start furthest below it)."""

from __future__ import annotations

from dataclasses import replace

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search.polish import polish_candidates, recoverable, spread, spread_along
from adacomp.search_spaces import CompressionPlan, Step
from tests.helpers.search import search_config


def _record(number: int, accuracy: float, latency: float, storage: float, utility: float) -> TrialRecord:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.1 + number / 100)]})
    metrics = {"accuracy": accuracy, "latency_pixel4": latency, "storage": storage, "accuracy_drop": 0.0}
    return TrialRecord(number, plan, metrics=metrics, utility=utility, violations=(0.0, 0.0))


# A front of four: trial 0 most accurate (best utility), 3 fastest, 2 smallest.
FRONT = [
    _record(0, 0.99, 0.30, 300_000, 0.9),
    _record(1, 0.98, 0.25, 250_000, 0.8),
    _record(2, 0.96, 0.22, 100_000, 0.5),
    _record(3, 0.95, 0.10, 200_000, 0.4),
]


def test_a_fine_tune_search_polishes_its_best_by_utility(tmp_path: object) -> None:
    config = search_config(tmp_path, polish={"top_k": 3}, constraints=[])  # type: ignore[arg-type]
    assert [r.number for r in polish_candidates(config, FRONT)] == [0, 1, 2]


def test_a_supernet_search_spreads_its_polish_along_each_cost_objective_ends_first(tmp_path: object) -> None:
    config = search_config(tmp_path, evaluation="supernet", polish={"top_k": 3}, constraints=[])  # type: ignore[arg-type]
    # by latency 3, 2, 1, 0 and by storage 2, 3, 1, 0: each one's ends in turn, each plan once
    assert [r.number for r in polish_candidates(config, FRONT)] == [3, 2, 0]
    wide = config.model_copy(update={"polish": config.polish.model_copy(update={"top_k": 10})})
    assert [r.number for r in polish_candidates(wide, FRONT)] == [3, 2, 0, 1]  # each plan once
    assert [r.number for r in spread(FRONT, 2)] == [0, 3] and spread(FRONT, 0) == []


def test_where_the_costs_agree_on_their_ends_each_cost_gives_more_picks() -> None:
    # latency and storage both rank 3 cheapest and 0 dearest: two picks each would give only
    # 3 and 0, so each cost gives three (its middle: 1 by latency, then 2 by storage)
    front = [
        _record(0, 0.99, 0.30, 300_000, 0.9),
        _record(1, 0.98, 0.22, 150_000, 0.8),
        _record(2, 0.97, 0.20, 250_000, 0.5),
        _record(3, 0.95, 0.10, 100_000, 0.4),
    ]
    picks = spread_along(front, ["latency_pixel4", "storage"], 3)
    assert [r.number for r in picks] == [3, 0, 1]
    assert [r.number for r in spread_along(front, ["latency_pixel4", "storage"], 4)] == [3, 0, 1, 2]
    assert [r.number for r in spread_along(front, ["storage"], 2)] == [3, 0]
    assert spread_along(front, ["storage"], 0) == [] and spread_along([], ["storage"], 2) == []


def test_a_supernet_search_polishes_plans_within_headroom_of_the_accuracy_constraint(
    tmp_path: object,
) -> None:
    constraints = [{"metric": "accuracy_drop", "max": 1.0}, {"metric": "storage", "max": 280_000}]
    config = search_config(tmp_path, evaluation="supernet", polish={"top_k": 5}, constraints=constraints)  # type: ignore[arg-type]
    records = [
        replace(FRONT[0], violations=(0.0, 20_000.0)),  # too large: no fine-tune shrinks it
        replace(FRONT[1], violations=(0.0, 0.0)),
        replace(FRONT[2], violations=(2.5, 0.0)),  # 2.5 pt past the floor: within the 3 pt headroom
        replace(FRONT[3], violations=(3.5, 0.0)),  # past it
    ]
    assert [r.number for r in polish_candidates(config, records)] == [2, 1]
    assert not recoverable(config, replace(records[1], stopped_at=1))
    narrow = config.model_copy(update={"polish": config.polish.model_copy(update={"headroom": 0.0})})
    assert [r.number for r in polish_candidates(narrow, records)] == [1]
    finetune = config.model_copy(update={"evaluation": "finetune"})
    assert [r.number for r in polish_candidates(finetune, records)] == [1]  # the feasible front only

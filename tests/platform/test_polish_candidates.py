"""Which plans of the front a search polishes: the best by utility; in supernet mode the front's
extremes on every cost objective first (its trials were never fine-tuned: the polish is where
their accuracy comes back, and the fastest plans start nearest the accuracy floor)."""

from __future__ import annotations

from adacomp.platform.results.ledger import TrialRecord
from adacomp.platform.search.polish import polish_candidates
from adacomp.search_spaces import CompressionPlan, Step
from tests.helpers.search import search_config


def _record(number: int, accuracy: float, latency: float, storage: float, utility: float) -> TrialRecord:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.1 + number / 100)]})
    metrics = {"accuracy": accuracy, "latency_pixel4": latency, "storage": storage, "accuracy_drop": 0.0}
    return TrialRecord(number, plan, metrics, utility, (0.0, 0.0))


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


def test_a_supernet_search_polishes_the_fronts_extremes_first(tmp_path: object) -> None:
    config = search_config(tmp_path, evaluation="supernet", polish={"top_k": 3}, constraints=[])  # type: ignore[arg-type]
    assert [r.number for r in polish_candidates(config, FRONT)] == [3, 2, 0]
    wide = config.model_copy(update={"polish": config.polish.model_copy(update={"top_k": 10})})
    assert [r.number for r in polish_candidates(wide, FRONT)] == [3, 2, 0, 1]  # each plan once

"""The tiny end-to-end search config shared by the search tests (test_search, test_rl_search,
test_strategy_contract, test_search_duplicates): emulated targets, tiny digits, seconds a trial."""

from __future__ import annotations

from pathlib import Path

from adacomp.platform.search_config import SearchConfig


def search_config(out: Path, **changes: object) -> SearchConfig:
    data: dict[str, object] = {
        "name": "e2e",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4", "snapdragon450"],
        "objectives": [
            {"metric": "accuracy"},
            {"metric": "latency", "target": "pixel4"},
            {"metric": "storage"},
        ],
        "constraints": [{"metric": "accuracy_drop", "max": 40}, {"metric": "storage", "max": 500_000}],
        "fidelity": {"rungs": 3, "eta": 3, "min_results": 1},
        "utility": {"accuracy": 1.0, "latency": 0.2, "storage": 0.3},
        "finetune": {"steps": 5},
        "trials": 8,
        "concurrency": 2,
        "strategy": "random",
        "seed": 3,
        "output": {"dir": str(out)},
    }
    data.update(changes)
    return SearchConfig.model_validate(data)

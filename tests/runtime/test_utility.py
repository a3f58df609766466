"""One AdaDeep utility for the search and the device: the formula pinned by hand-computed numbers,
and the search's and the selector's rankings shown to agree on the same measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adacomp.platform.evaluate.objectives import utility as search_utility
from adacomp.platform.search_config import SearchConfig, UsageWeights
from adacomp.runtime import Manifest, Selector
from adacomp.runtime.manifest import UtilityWeights
from adacomp.runtime.utility import adadeep_utility, normalised
from tests.runtime.bundles import THREE, UTILITY, manifest_dict

WEIGHTS = UtilityWeights(accuracy=1.0, latency=0.5, energy=0.25, memory=0.0, storage=0.1)


def test_the_formula_by_hand() -> None:
    ratios = {"accuracy": 0.9, "latency": 0.5, "energy": 0.4, "memory": 3.0, "storage": 0.25}
    # 1.0 * 0.9 - 0.5 * 0.5 - 0.25 * 0.4 - 0 * 3.0 - 0.1 * 0.25
    assert float(adadeep_utility(WEIGHTS, ratios)) == pytest.approx(0.9 - 0.25 - 0.1 - 0.025)
    # a term without a ratio is left out, not counted as 0 cost or as the baseline
    assert float(adadeep_utility(WEIGHTS, {**ratios, "energy": None})) == pytest.approx(0.9 - 0.25 - 0.025)
    assert float(adadeep_utility(WEIGHTS, {"latency": 1.0})) == pytest.approx(-0.5)
    arrays = adadeep_utility(WEIGHTS, {"accuracy": np.array([1.0, 0.5]), "latency": np.array([1.0, 0.2])})
    assert arrays.tolist() == pytest.approx([0.5, 0.4])


def test_normalised_by_the_baseline_or_left_out_or_by_the_peak() -> None:
    assert normalised([2.0, 4.0], 8.0).tolist() == [0.25, 0.5]  # type: ignore[union-attr]
    assert normalised([2.0, 4.0], None) is None and normalised([2.0, 4.0], 0.0) is None
    assert normalised([2.0, 4.0], None, peak_fallback=True).tolist() == [0.5, 1.0]  # type: ignore[union-attr]
    assert normalised([0.0, 0.0], 0.0, peak_fallback=True).tolist() == [0.0, 0.0]  # type: ignore[union-attr]


def _search_config(tmp_path: Path) -> SearchConfig:
    return SearchConfig.model_validate(
        {
            "name": "u",
            "task": "digits",
            "targets": ["pixel4"],
            "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
            "utility": UTILITY,
            "output": {"dir": str(tmp_path)},
        }
    )


def test_search_and_selector_score_the_same_measurements_the_same(tmp_path: Path) -> None:
    """The bundle's configurations scored by the search (one target) and by the device's selector
    at a full battery: the same numbers, so the device ranks as the search did."""
    config = _search_config(tmp_path)
    manifest = Manifest.from_dict(manifest_dict(), source="test")
    baseline = {"accuracy": 0.98, "latency_pixel4": 12.0, "energy_pixel4": 5.0, "memory_pixel4": 10.0}
    baseline["storage"] = float(4 * 2**20)
    selector = Selector(manifest, "pixel4")
    for i, (_, accuracy, latency, energy, memory) in enumerate(THREE):
        metrics = {
            "accuracy": accuracy,
            "latency_pixel4": latency,
            "energy_pixel4": energy,
            "memory_pixel4": memory,
            "storage": float(manifest.configurations[i].storage_bytes),
        }
        assert search_utility(config, metrics, baseline) == pytest.approx(float(selector.utility[i]))
    # by hand, "big": 0.95/0.98 - 0.1 * 10/12 - 0.05 * 4/5
    assert float(selector.utility[0]) == pytest.approx(0.95 / 0.98 - 0.1 * 10 / 12 - 0.05 * 4 / 5)


def test_they_differ_only_where_the_baseline_lacks_a_value(tmp_path: Path) -> None:
    """A device without memory measurements: the search leaves memory out (nothing measured);
    the selector estimates each configuration's memory from its storage and, the baseline having
    no memory either, normalises by the largest estimate (see adacomp.runtime.utility)."""
    weights = {**UTILITY, "memory": 0.2}
    config = _search_config(tmp_path).model_copy(update={"utility": UsageWeights(**weights)})
    data = manifest_dict(utility=weights)
    for entry in [*data["configurations"], data["baseline"]]:
        entry["devices"]["pixel4"]["memory_mb"] = None
    manifest = Manifest.from_dict(data, source="test")
    storage = [c.storage_bytes for c in manifest.configurations]
    metrics = {"accuracy": 0.95, "latency_pixel4": 10.0, "energy_pixel4": 4.0, "memory_pixel4": None}
    baseline = {"accuracy": 0.98, "latency_pixel4": 12.0, "energy_pixel4": 5.0, "memory_pixel4": None}
    without_memory = 0.95 / 0.98 - 0.1 * 10 / 12 - 0.05 * 4 / 5
    assert search_utility(config, metrics, baseline) == pytest.approx(without_memory)
    selector = Selector(manifest, "pixel4")
    assert float(selector.utility[0]) == pytest.approx(without_memory - 0.2 * storage[0] / max(storage))

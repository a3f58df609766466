"""The selector against brute force (hypothesis), and its hysteresis on a noisy budget."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adacomp.runtime import Context, Manifest, ManifestError, Selector
from adacomp.runtime.selector import (
    NOTE_FALLBACK,
    NOTE_MEMORY_ESTIMATED,
    NOTE_NO_ENERGY_BATTERY,
    NOTE_NO_ENERGY_BUDGET,
)
from tests.runtime.bundles import manifest_dict, selector_manifests


def maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.none() | strategy


contexts = st.builds(
    Context,
    latency_budget_ms=maybe(st.floats(0, 120)),
    energy_budget_mj=maybe(st.floats(0, 60)),
    battery=maybe(st.floats(0, 1)),
    free_memory_mb=maybe(st.floats(0, 60)),
    min_accuracy=maybe(st.floats(0, 1)),
)


def brute_costs(manifest: Manifest, device: str) -> list[dict[str, Any]]:
    """Per configuration, in plain Python: the values the spec says the selector uses."""
    return [
        {
            "accuracy": c.accuracy,
            "latency": c.devices[device].latency_ms,
            "energy": c.devices[device].energy_mj,
            "memory": c.devices[device].memory_mb
            if c.devices[device].memory_mb is not None
            else c.storage_bytes / 2**20,
            "storage": c.storage_bytes,
        }
        for c in manifest.configurations
    ]


def brute_utility(manifest: Manifest, device: str, context: Context) -> list[float]:
    rows = brute_costs(manifest, device)
    base = manifest.baseline.devices[device]
    baseline = {
        "accuracy": manifest.baseline.accuracy,
        "latency": base.latency_ms,
        "energy": base.energy_mj,
        "memory": base.memory_mb,
        "storage": manifest.baseline.storage_bytes,
    }
    has_energy = rows[0]["energy"] is not None
    weights = manifest.utility.to_dict()
    if has_energy and context.battery is not None:
        weights["energy"] += 1.0 - context.battery
    terms = ["accuracy", "latency", "memory", "storage"] + (["energy"] if has_energy else [])
    scores = [0.0] * len(rows)
    for term in terms:
        norm = baseline[term] or max(r[term] for r in rows) or 1.0
        sign = 1 if term == "accuracy" else -1
        for i, row in enumerate(rows):
            scores[i] += sign * weights[term] * row[term] / norm
    return scores


def brute_feasible(manifest: Manifest, device: str, context: Context) -> list[bool]:
    feasible = []
    for row in brute_costs(manifest, device):
        ok = context.latency_budget_ms is None or row["latency"] <= context.latency_budget_ms
        if row["energy"] is not None and context.energy_budget_mj is not None:
            ok = ok and row["energy"] <= context.energy_budget_mj
        ok = ok and (context.free_memory_mb is None or row["memory"] <= context.free_memory_mb)
        ok = ok and (context.min_accuracy is None or row["accuracy"] >= context.min_accuracy)
        feasible.append(ok)
    return feasible


@given(selector_manifests(), st.data(), st.lists(contexts, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_selection_satisfies_the_context_or_is_a_fallback_because_nothing_does(
    data: dict[str, Any], draw: st.DataObject, sequence: list[Context]
) -> None:
    manifest = Manifest.from_dict(data)
    device = draw.draw(st.sampled_from(manifest.devices))
    selector = Selector(manifest, device)
    previous = None
    for context in sequence:
        selection = selector.select(context)
        feasible = brute_feasible(manifest, device, context)
        assert selection.fallback == (not any(feasible))
        if not selection.fallback:
            assert feasible[selection.index]
            assert selector.violations(selection.index, context) == ()
        assert selection.id == manifest.configurations[selection.index].id
        assert selection.switched == (previous is not None and previous != selection.index)
        assert selector.current == selection
        previous = selection.index


@given(selector_manifests(), st.data(), contexts)
@settings(max_examples=150, deadline=None)
def test_fresh_selector_without_margin_or_slack_is_the_brute_force_argmax(
    data: dict[str, Any], draw: st.DataObject, context: Context
) -> None:
    manifest = Manifest.from_dict(data)
    device = draw.draw(st.sampled_from(manifest.devices))
    scores = brute_utility(manifest, device, context)
    feasible = brute_feasible(manifest, device, context)
    np.testing.assert_allclose(Selector(manifest, device).scores(context), scores, rtol=1e-9, atol=1e-9)
    assert list(Selector(manifest, device).feasible(context)) == feasible
    for selector in (
        Selector(manifest, device, margin=0, slack=0),
        Selector(manifest, device, margin=0.5, slack=0.3, hysteresis=False),
    ):
        selection = selector.select(context)
        if any(feasible):
            best = max(s for s, ok in zip(scores, feasible, strict=True) if ok)
            assert feasible[selection.index] and not selection.fallback
            assert math.isclose(scores[selection.index], best, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(selection.score, scores[selection.index], rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert selection.fallback and NOTE_FALLBACK in selection.notes


@given(selector_manifests(), st.data(), contexts, contexts)
@settings(max_examples=100, deadline=None)
def test_the_same_context_twice_never_switches_the_second_time(
    data: dict[str, Any], draw: st.DataObject, before: Context, context: Context
) -> None:
    manifest = Manifest.from_dict(data)
    device = draw.draw(st.sampled_from(manifest.devices))
    for selector in (Selector(manifest, device), Selector(manifest, device, hysteresis=False)):
        selector.select(before)
        first = selector.select(context)
        second = selector.select(context)
        assert not second.switched and second.index == first.index


THREE = Manifest.from_dict(manifest_dict())  # big 10 ms / small 6 ms / tiny 3 ms on pixel4


def test_no_context_picks_the_best_utility_and_budgets_exclude() -> None:
    selector = Selector(THREE, "pixel4")
    assert selector.select(Context()).id == "big"
    selector.reset()
    assert selector.select(Context(latency_budget_ms=8)).id == "small"
    selector.reset()
    assert selector.select(Context(free_memory_mb=2.5)).id == "tiny"
    selector.reset()
    assert selector.select(Context(energy_budget_mj=2.2)).id == "small"  # 2.0 fits with 5 % spare


def test_an_empty_battery_weighs_energy() -> None:
    rows = [("hungry", 0.95, 5.0, 10.0, 4.0), ("frugal", 0.85, 5.0, 1.0, 4.0)]
    manifest = Manifest.from_dict(manifest_dict(rows))
    selector = Selector(manifest, "pixel4", hysteresis=False)
    assert selector.select(Context(battery=1.0)).id == "hungry"
    assert selector.select(Context(battery=0.1)).id == "frugal"
    assert selector.energy_weight_for(Context(battery=0.0)) == pytest.approx(0.05 + 1.0)
    assert selector.energy_weight_for(Context()) == pytest.approx(0.05)


def test_a_device_without_energy_numbers_ignores_energy_and_says_so() -> None:
    selector = Selector(THREE, "host")
    selection = selector.select(Context(energy_budget_mj=0.0, battery=0.0))
    assert selection.id == "big" and not selection.fallback
    assert NOTE_NO_ENERGY_BUDGET in selection.notes and NOTE_NO_ENERGY_BATTERY in selection.notes
    assert np.isnan(selector.energy_mj).all() and not selector.has_energy


def test_memory_without_measurements_is_estimated_from_storage() -> None:
    data = manifest_dict()
    for config in [*data["configurations"], data["baseline"]]:
        config["devices"]["host"]["memory_mb"] = None
    manifest = Manifest.from_dict(data)
    selector = Selector(manifest, "host")
    np.testing.assert_allclose(selector.memory_mb, [c.storage_bytes / 2**20 for c in manifest.configurations])
    selection = selector.select(Context(free_memory_mb=1.5))
    assert selection.id == "small" and NOTE_MEMORY_ESTIMATED in selection.notes


def test_fallback_takes_the_smallest_relative_violation() -> None:
    selector = Selector(THREE, "pixel4")
    # tiny breaks latency by 50 %, small by 200 %, big by 400 %
    selection = selector.select(Context(latency_budget_ms=2.0))
    assert selection.fallback and selection.id == "tiny"
    # latency (tiny +0 %, small +100 %) vs accuracy (tiny 0.6 < 0.8: -25 %, small ok): small's 100 % > tiny's 25 %
    selection = selector.select(Context(latency_budget_ms=3.0, min_accuracy=0.8, free_memory_mb=1.0))
    assert selection.fallback and selection.id == "tiny"


def test_unknown_device_lists_the_manifest_devices() -> None:
    with pytest.raises(ManifestError, match=r"unknown device 'tablet'; manifest 'digits' has: pixel4, host"):
        Selector(THREE, "tablet")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_budget_ms": -1}, r"latency_budget_ms: expected a finite number >= 0, got -1"),
        ({"battery": 1.5}, r"battery: expected a number in \[0, 1\], got 1.5"),
        ({"min_accuracy": math.nan}, r"min_accuracy: expected a finite number >= 0, got nan"),
        ({"free_memory_mb": "3"}, r"free_memory_mb: expected a number, got '3'"),
        ({"energy_budget_mj": True}, r"energy_budget_mj: expected a number, got True"),
    ],
)
def test_context_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Context(**kwargs)


def test_selector_arguments_validate() -> None:
    with pytest.raises(ValueError, match="slack"):
        Selector(THREE, "pixel4", slack=1.0)
    with pytest.raises(ValueError, match="margin"):
        Selector(THREE, "pixel4", margin=-0.1)


def noisy_budget(center: float, steps: int, seed: int) -> list[Context]:
    rng = np.random.default_rng(seed)
    return [Context(latency_budget_ms=float(center * (1 + rng.uniform(-0.03, 0.03)))) for _ in range(steps)]


def switches(selector: Selector, trace: list[Context]) -> int:
    return sum(selector.select(context).switched for context in trace)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hysteresis_does_not_flap_on_a_noisy_budget(seed: int) -> None:
    trace = noisy_budget(10.0, 200, seed)  # ±3 % around big's 10 ms
    plain = Selector(THREE, "pixel4", margin=0, slack=0)
    assert switches(plain, trace) >= 40
    steady = Selector(THREE, "pixel4")
    assert switches(steady, trace) == 0
    for context in trace:
        selection = steady.select(context)
        assert not selection.fallback and steady.violations(selection.index, context) == ()
    # ... and a budget that really grows is followed, once.
    grown = trace + noisy_budget(14.0, 100, seed + 10)
    steady.reset()
    assert switches(steady, grown) == 1
    assert steady.current is not None and steady.current.id == "big"

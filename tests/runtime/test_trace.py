"""Traces: CSV/JSON loading with located errors, the built-in drain day, replay vs a static model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adacomp.runtime import (
    Context,
    Manifest,
    Selector,
    TraceError,
    TracePoint,
    drain_trace,
    load_trace,
    replay,
    replay_static,
    write_trace_csv,
)
from tests.runtime.bundles import manifest_dict

THREE = Manifest.from_dict(manifest_dict())  # big 10 ms / small 6 ms / tiny 3 ms on pixel4


def test_csv_with_empty_cells_and_any_column_order(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("battery,t,latency_budget_ms\n1.0,0,12\n0.9,1.5,\n\n0.8, 3 ,7.5\n")
    assert load_trace(path) == [
        TracePoint(0.0, Context(latency_budget_ms=12.0, battery=1.0)),
        TracePoint(1.5, Context(battery=0.9)),
        TracePoint(3.0, Context(latency_budget_ms=7.5, battery=0.8)),
    ]


def test_json_list_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_text(
        json.dumps([{"t": 0, "free_memory_mb": 3, "min_accuracy": None}, {"t": 1, "energy_budget_mj": 2}])
    )
    assert load_trace(path) == [
        TracePoint(0.0, Context(free_memory_mb=3.0)),
        TracePoint(1.0, Context(energy_budget_mj=2.0)),
    ]


def test_write_then_load_is_exact(tmp_path: Path) -> None:
    points = drain_trace((3.0, 10.0), steps=50, seed=4, memory_range_mb=(2.0, 8.0))
    assert load_trace(write_trace_csv(points, tmp_path / "drain.csv")) == points


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "latency_budget_ms\n5\n", r"line 1: the header must name a column 't'"),
        ("a.csv", "t,speed\n0,1\n", r"line 1: unknown column 'speed'; expected t, latency_budget_ms"),
        ("a.csv", "t,t\n0,1\n", r"line 1: a column is named twice"),
        ("a.csv", "t,battery\n0,0.5\n1,abc\n", r"line 3, column 'battery': expected a number, got 'abc'"),
        ("a.csv", "t,battery\n0,1.5\n", r"line 2, column 'battery': expected a number in \[0, 1\], got 1.5"),
        (
            "a.csv",
            "t,latency_budget_ms\n0,-2\n",
            r"line 2, column 'latency_budget_ms': expected a finite number >= 0",
        ),
        ("a.csv", "t,battery\n0,0.5,3\n", r"line 2: 3 cells, the header has 2"),
        ("a.csv", "t,battery\n,0.5\n", r"line 2, column 't': expected a finite time, got None"),
        ("a.csv", "t,battery\n1,0.5\n0,0.4\n", r"line 3: t goes back in time \(0 after 1\)"),
        ("a.csv", "t,battery\n", r"no trace points"),
        ("a.json", "[{", r"not valid JSON \(.* at line 1 column 3\)"),
        ("a.json", '{"t": 0}', r"expected a list of objects"),
        ("a.json", "[3]", r"\[0\]: expected an object, got 3"),
        ("a.json", '[{"t": 0, "battery": "full"}]', r"\[0\]\.battery: expected a number or null, got 'full'"),
        ("a.json", '[{"t": 0}, {"battery": 0.5}]', r"\[1\]\.t: expected a finite time, got None"),
        (
            "a.json",
            '[{"t": 0, "free_memory_mb": -1}]',
            r"\[0\]\.free_memory_mb: expected a finite number >= 0, got -1",
        ),
        ("a.json", '[{"t": 0, "budget": 1}]', r"\[0\]\.budget: unknown key"),
        ("a.txt", "t\n0\n", r"expected a \.csv or \.json trace, got \.txt"),
    ],
)
def test_bad_trace_names_file_row_and_column(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError, match=message) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_drain_trace_is_deterministic_and_drains() -> None:
    trace = drain_trace((3.0, 10.0), steps=120, seed=0, memory_range_mb=(2.0, 8.0))
    assert trace == drain_trace((3.0, 10.0), steps=120, seed=0, memory_range_mb=(2.0, 8.0))
    assert trace != drain_trace((3.0, 10.0), steps=120, seed=1, memory_range_mb=(2.0, 8.0))
    battery = np.array([p.context.battery for p in trace], dtype=float)
    assert battery[0] == 1.0 and battery[-1] == 0.05 and (np.diff(battery) < 0).all()
    assert [p.t for p in trace] == list(range(120))
    budgets = np.array([p.context.latency_budget_ms for p in trace])
    assert (budgets[:36] > 10.0 * 1.15 * 0.89).all()  # relaxed: everything fits
    assert (budgets[36:72] < 6.0).all() and (budgets >= 3.0).all()  # tight, but the fastest fits
    assert len(set(np.round(budgets[:36], 6))) > 30  # noisy
    free = [p.context.free_memory_mb for p in trace]
    pressure = [f for f in free if f is not None]
    assert 0 < len(pressure) < 30 and all(2.0 <= f < 8.0 for f in pressure)
    assert all(p.context.free_memory_mb is None for p in drain_trace((3.0, 10.0)))


def test_drain_trace_validates() -> None:
    with pytest.raises(ValueError, match="latency_range_ms"):
        drain_trace((5.0, 1.0))
    with pytest.raises(ValueError, match="steps"):
        drain_trace((1.0, 5.0), steps=1)


def test_adaptive_replay_beats_the_static_model_on_violations() -> None:
    trace = drain_trace((3.0, 10.0), steps=120, seed=0, memory_range_mb=(2.0, 8.0))
    selector = Selector(THREE, "pixel4")
    static_id = Selector(THREE, "pixel4").select(trace[0].context).id
    assert static_id == "big"  # the relaxed start: what you would ship without adaptation
    adaptive = replay(selector, trace)
    static = replay_static(THREE, "pixel4", static_id, trace)
    a, s = adaptive.summary(), static.summary()
    assert a["steps"] == s["steps"] == 120
    assert a["violations"] == 0 and a["fallbacks"] == 0 < s["violations"]
    assert s["switches"] == 0 and s["configurations_used"] == 1
    assert 0 < a["switches"] == sum(step.switched for step in adaptive.steps) <= 8
    assert a["mean_accuracy"] < s["mean_accuracy"] and a["total_energy_mj"] < s["total_energy_mj"]
    assert s["mean_accuracy"] == pytest.approx(0.95) and s["total_energy_mj"] == pytest.approx(4.0 * 120)
    assert a["mean_latency_ms"] == pytest.approx(np.mean([step.latency_ms for step in adaptive.steps]))
    assert replay(selector, trace) == adaptive  # replay starts from a reset selector
    for step in static.steps:
        budget = step.context.latency_budget_ms
        assert budget is not None and ("latency" in step.violated) == (step.latency_ms > budget)
    assert json.loads(json.dumps(adaptive.to_dict()))["summary"] == a


# A digits bundle as `make demo`'s supernet flow measured it on the emulated Pixel 4: accuracy
# within 2 pt, latency and energy spread by half (id, accuracy, latency ms, energy mJ, memory MiB).
DIGITS_LIKE = (
    ("widest", 0.9917, 0.229, 0.470, 8.6),
    ("mid", 0.9861, 0.160, 0.330, 8.0),
    ("lean", 0.9833, 0.159, 0.322, 7.5),
    ("fastest", 0.9778, 0.149, 0.302, 7.0),
    ("odd", 0.9722, 0.213, 0.427, 6.0),
)


def _digits_like(utility: dict[str, float]) -> Manifest:
    data = manifest_dict(DIGITS_LIKE, utility=utility)
    data["baseline"] = {**data["baseline"], "accuracy": 0.9917}
    data["baseline"]["devices"]["pixel4"] = {"latency_ms": 0.214, "energy_mj": 0.4685, "memory_mb": 8.6}
    return Manifest.from_dict(data)


@pytest.mark.parametrize(
    ("utility", "adapts"),
    [
        ({"accuracy": 1.0, "latency": 0.0, "energy": 0.0, "memory": 0.0, "storage": 0.0}, True),
        ({"accuracy": 1.0, "latency": 0.3, "energy": 0.0, "memory": 0.0, "storage": 0.3}, False),
    ],
    ids=["accuracy-first", "the-search's-cost-heavy-utility"],
)
def test_a_bundle_adapts_only_under_a_utility_that_puts_accuracy_first(
    utility: dict[str, float], adapts: bool
) -> None:
    """Why `supernet.runtime_utility` exists: weighing costs as the search does, the cheapest
    configuration wins in every context of the drain day and the bundle is one static model;
    accuracy first, the selector runs the widest while the budget allows and steps down as the
    budget tightens and the battery drains, never breaking the context."""
    manifest = _digits_like(utility)
    trace = drain_trace((0.149, 0.229), steps=120, seed=0)
    static_id = Selector(manifest, "pixel4").select(trace[0].context).id
    adaptive = replay(Selector(manifest, "pixel4"), trace).summary()
    static = replay_static(manifest, "pixel4", static_id, trace).summary()
    assert adaptive["violations"] == 0
    if adapts:
        assert static_id == "widest"
        assert adaptive["switches"] >= 2 and static["violations"] > 0
        assert adaptive["total_energy_mj"] < static["total_energy_mj"]
    else:
        assert static_id == "fastest" and adaptive["switches"] == 0 == static["violations"]


def test_energy_total_is_unknown_on_a_device_without_a_power_meter() -> None:
    trace = drain_trace((6.0, 20.0), steps=20)
    assert replay(Selector(THREE, "host"), trace).summary()["total_energy_mj"] is None

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adacomp.platform.evaluate.pareto import dominates, hypervolume, non_dominated, to_minimisation

coords = st.floats(min_value=0, max_value=1, allow_nan=False)


def test_dominance_and_front() -> None:
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (2, 2), (6, 6)]
    assert dominates((2, 2), (3, 3)) and not dominates((2, 2), (2, 2))
    assert non_dominated(points) == [0, 1, 2, 4]


@given(st.lists(st.tuples(coords, coords, coords), min_size=1, max_size=25))
def test_front_matches_brute_force(points: list[tuple[float, float, float]]) -> None:
    front = set(non_dominated(points))
    for i, p in enumerate(points):
        dominated = any(dominates(q, p) for q in points)
        assert (i in front) == (not dominated)


def test_hypervolume_known_values() -> None:
    assert hypervolume([(0.0, 0.0)], (1.0, 1.0)) == 1.0
    assert hypervolume([(0.5, 0.0), (0.0, 0.5)], (1.0, 1.0)) == pytest.approx(0.75)
    assert hypervolume([(0.5, 0.5, 0.5)], (1.0, 1.0, 1.0)) == pytest.approx(0.125)
    assert hypervolume([(2.0, 0.0)], (1.0, 1.0)) == 0.0  # outside the reference box


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(coords, coords, coords), min_size=1, max_size=8))
def test_hypervolume_matches_inclusion_exclusion(points: list[tuple[float, float, float]]) -> None:
    reference = (1.0, 1.0, 1.0)
    exact = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = tuple(max(p[k] for p in subset) for k in range(3))
            box = 1.0
            for c, r in zip(corner, reference, strict=True):
                box *= max(0.0, r - c)
            exact += (-1) ** (size + 1) * box
    assert hypervolume(points, reference) == pytest.approx(exact, abs=1e-9)


def test_hypervolume_grows_with_a_new_non_dominated_point() -> None:
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(20)]
    before = hypervolume(points, (1, 1))
    after = hypervolume([*points, (0.0, 0.0)], (1, 1))
    assert after == pytest.approx(1.0)
    assert after > before


def test_to_minimisation() -> None:
    assert to_minimisation([0.9, 3.0], ["max", "min"]) == (-0.9, 3.0)

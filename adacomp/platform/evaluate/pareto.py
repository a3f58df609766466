"""Pareto fronts, non-dominated ranks, crowding and hypervolume: pure functions over objective
vectors (what a search's front, its plots and multi-objective successive halving compare).

Everything is expressed for minimisation; a maximised objective (accuracy) is negated by the
caller (`to_minimisation`). Hypervolume is exact (recursive slicing, fine for the few objectives
and the fronts of hundreds of points a search produces) and measured against a reference point
that every point must dominate to count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Point = tuple[float, ...]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b everywhere and strictly better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (duplicates are all kept)."""
    front = []
    for i, p in enumerate(points):
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i):
            front.append(i)
    return front


def non_dominated_ranks(count: int, better: Callable[[int, int], bool]) -> list[int]:
    """Each item's front in non-dominated sorting (0: no item is better; k: only items of fronts
    below k are), where `better(i, j)` says item i dominates item j. Deb et al.'s fast sort;
    written here because Optuna's is private (optuna.study._multi_objective)."""
    beaten_by = [0] * count  # how many items dominate each
    beats: list[list[int]] = [[] for _ in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            if better(i, j):
                beats[i].append(j)
                beaten_by[j] += 1
            elif better(j, i):
                beats[j].append(i)
                beaten_by[i] += 1
    ranks = [0] * count
    front = [i for i in range(count) if beaten_by[i] == 0]
    rank = 0
    while front:
        following = []
        for i in front:
            ranks[i] = rank
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        front, rank = following, rank + 1
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point within its set: the sum over objectives of the
    gap between its two neighbours, relative to the objective's range; the extremes of every
    objective are infinitely far (always kept). Equal points share one distance, so the answer
    never depends on the order the points came in."""
    distinct = sorted(set(map(tuple, points)))
    count = len(distinct)
    distances = [0.0] * count
    if count <= 2:
        distances = [math.inf] * count
    else:
        for k in range(len(distinct[0])):
            order = sorted(range(count), key=lambda i: distinct[i][k])
            distances[order[0]] = distances[order[-1]] = math.inf
            span = distinct[order[-1]][k] - distinct[order[0]][k]
            if not math.isfinite(span) or span <= 0:
                continue
            for before, here, after in zip(order, order[1:], order[2:], strict=False):
                gap = distinct[after][k] - distinct[before][k]
                distances[here] += gap / span if math.isfinite(gap) else math.inf
    by_point = dict(zip(distinct, distances, strict=True))
    return [by_point[tuple(p)] for p in points]


def to_minimisation(values: Sequence[float], directions: Sequence[str]) -> Point:
    if len(values) != len(directions):
        raise ValueError(f"{len(values)} values for {len(directions)} directions")
    return tuple(-v if d == "max" else v for v, d in zip(values, directions, strict=True))


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by `points` and bounded by `reference` (minimisation)."""
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not inside:
        return 0.0
    front = [inside[i] for i in non_dominated(inside)]
    return _hv(sorted(set(front)), tuple(reference))


def _hv(points: list[Point], reference: Point) -> float:
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    if len(reference) == 2:
        area, best_y = 0.0, reference[1]
        for x, y in sorted(points):
            if y < best_y:
                area += (reference[0] - x) * (best_y - y)
                best_y = y
        return area
    # Slice along the last objective: between consecutive levels, the points at or below the
    # level contribute the (d-1)-dimensional hypervolume of their projection.
    ordered = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(ordered):
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        depth = upper - point[-1]
        if depth <= 0:
            continue
        projected = [p[:-1] for p in ordered[: i + 1]]
        front = [projected[j] for j in non_dominated(projected)]
        volume += depth * _hv(sorted(set(front)), reference[:-1])
    return volume

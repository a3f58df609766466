"""Pareto fronts and hypervolume: pure functions over objective vectors.

Everything is expressed for minimisation; a maximised objective (accuracy) is negated by the
caller (`to_minimisation`). Hypervolume is exact (recursive slicing, fine for the few objectives
and the fronts of hundreds of points a search produces) and measured against a reference point
that every point must dominate to count.
"""

from __future__ import annotations

from collections.abc import Sequence

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

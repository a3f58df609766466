"""A configuration of a supernet as data, and the space of configurations it holds.

Like a CompressionPlan, a `SubnetConfig` is a plain, JSON-able value keyed by layer names: it
is logged, hashed, cached by, and replayed against the supernet to extract the same static model.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adacomp.errors import AdacompError
from adacomp.search_spaces.supernet.layout import SupernetLayout
from adacomp.search_spaces.techniques.channel_prune import aligned_channels

__all__ = ["PRECISIONS", "SubnetConfig", "SupernetSpace"]

# Precision is applied when the static model is exported (onnxruntime quantization), not trained.
# int8_weights (int8 storage, float compute; see techniques/quantize.py) last: the smallest
# configuration is stored in int8 without int8 QDQ's slowdown on runtimes lacking fast kernels.
PRECISIONS = ("fp32", "fp16", "int8", "int8_weights")


@dataclass(frozen=True)
class SubnetConfig:
    width: tuple[tuple[str, int], ...] = ()  # width group (its producer layer) -> active channels
    rank: tuple[tuple[str, int], ...] = ()  # rank-elastic layer -> active rank
    skip: tuple[str, ...] = ()  # skipped blocks
    precision: str = "fp32"

    @classmethod
    def of(
        cls,
        width: Mapping[str, int] | None = None,
        rank: Mapping[str, int] | None = None,
        skip: Sequence[str] = (),
        precision: str = "fp32",
    ) -> SubnetConfig:
        return cls(
            tuple(sorted((width or {}).items())),
            tuple(sorted((rank or {}).items())),
            tuple(sorted(skip)),
            precision,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": dict(self.width),
            "rank": dict(self.rank),
            "skip": list(self.skip),
            "precision": self.precision,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: object, source: str = "configuration") -> SubnetConfig:
        if not isinstance(data, Mapping):
            raise AdacompError(f"{source}: expected an object with width, rank, skip, precision")
        unknown = sorted(set(data) - {"width", "rank", "skip", "precision"})
        if unknown:
            raise AdacompError(
                f"{source}: unknown field {unknown[0]!r}; expected width, rank, skip, precision"
            )
        width, rank = data.get("width", {}), data.get("rank", {})
        for key, mapping in (("width", width), ("rank", rank)):
            if not isinstance(mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in mapping.items()
            ):
                raise AdacompError(f"{source}.{key}: expected an object of layer name -> integer")
        skip = data.get("skip", [])
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            raise AdacompError(f"{source}.skip: expected a list of block names")
        precision = data.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise AdacompError(f"{source}.precision: {precision!r}; expected one of {', '.join(PRECISIONS)}")
        return cls.of(width, rank, skip, str(precision))

    def __str__(self) -> str:
        parts = [f"{k}:{v}" for k, v in self.width] + [f"{k}:r{v}" for k, v in self.rank]
        parts += [f"-{b}" for b in self.skip]
        return f"[{self.precision}] " + (" ".join(parts) or "largest")


def _choices(maximum: int, fractions: Sequence[float], rounding: str) -> tuple[int, ...]:
    """The distinct counts `fractions` of `maximum` give; "align" rounds widths like channel pruning.

    A subnet runs on the same onnxruntime kernels as a pruned model, so an elastic width gets
    the same multiple-of-a-block rounding (`aligned_channels`); fractions may then coincide.
    """
    values = set()
    for f in fractions:
        raw = f * maximum
        if rounding == "ceil":
            values.add(max(1, math.ceil(raw)))
        else:
            values.add(aligned_channels(maximum, max(1, round(raw))))
    values.add(maximum)
    return tuple(sorted(v for v in values if v <= maximum))


@dataclass(frozen=True)
class SupernetSpace:
    """The configurations a supernet holds: per group widths, per layer ranks, skips, precisions."""

    layout: SupernetLayout
    width_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    rank_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    precisions: tuple[str, ...] = PRECISIONS
    widths: dict[str, tuple[int, ...]] = field(init=False, compare=False)
    ranks: dict[str, tuple[int, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        for p in self.precisions:
            if p not in PRECISIONS:
                raise AdacompError(f"precisions: {p!r}; expected some of {', '.join(PRECISIONS)}")
        if not self.precisions:
            raise AdacompError("precisions: expected at least one of " + ", ".join(PRECISIONS))
        for name, values in (("width", self.width_fractions), ("rank", self.rank_fractions)):
            if not values or not all(0 < v <= 1 for v in values):
                raise AdacompError(f"{name} fractions {list(values)}: expected numbers in (0, 1]")
        widths = {g.producer: _choices(g.channels, self.width_fractions, "align") for g in self.layout.groups}
        ranks = {r.name: _choices(r.max_rank, self.rank_fractions, "ceil") for r in self.layout.rank_layers}
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "ranks", ranks)

    def largest(self, precision: str | None = None) -> SubnetConfig:
        return SubnetConfig.of(
            {k: v[-1] for k, v in self.widths.items()},
            {k: v[-1] for k, v in self.ranks.items()},
            (),
            precision or self.precisions[0],
        )

    def smallest(self, precision: str | None = None) -> SubnetConfig:
        return SubnetConfig.of(
            {k: v[0] for k, v in self.widths.items()},
            {k: v[0] for k, v in self.ranks.items()},
            self.layout.blocks,
            precision or self.precisions[-1],
        )

    def sample(self, rng: random.Random) -> SubnetConfig:
        return SubnetConfig.of(
            {k: rng.choice(v) for k, v in self.widths.items()},
            {k: rng.choice(v) for k, v in self.ranks.items()},
            [b for b in self.layout.blocks if rng.random() < 0.5],
            rng.choice(self.precisions),
        )

    @property
    def size(self) -> int:
        """How many configurations the space holds (precision included)."""
        count = len(self.precisions) * 2 ** len(self.layout.blocks)
        for values in (*self.widths.values(), *self.ranks.values()):
            count *= len(values)
        return count

    def validate(self, config: SubnetConfig) -> SubnetConfig:
        """`config` filled with the largest value for anything it leaves out; errors name the layer."""
        width, rank = dict(config.width), dict(config.rank)
        for kind, given, allowed in (("width", width, self.widths), ("rank", rank, self.ranks)):
            for name, value in given.items():
                if name not in allowed:
                    known = ", ".join(allowed) or "none"
                    raise AdacompError(f"configuration {kind}: unknown layer {name!r}; elastic: {known}")
                if not 1 <= value <= allowed[name][-1]:
                    raise AdacompError(
                        f"configuration {kind}.{name}={value}; expected 1..{allowed[name][-1]}"
                    )
        for block in config.skip:
            if block not in self.layout.blocks:
                known = ", ".join(self.layout.blocks) or "none"
                raise AdacompError(
                    f"configuration skip: {block!r} is not a skippable block; skippable: {known}"
                )
        if config.precision not in self.precisions:
            raise AdacompError(
                f"configuration precision {config.precision!r}; "
                f"this supernet offers {', '.join(self.precisions)}"
            )
        full_width = {k: width.get(k, v[-1]) for k, v in self.widths.items()}
        full_rank = {k: rank.get(k, v[-1]) for k, v in self.ranks.items()}
        return SubnetConfig.of(full_width, full_rank, config.skip, config.precision)

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
    alternative: tuple[tuple[str, str], ...] = ()  # layer -> the alternative branch it runs as

    @classmethod
    def of(
        cls,
        width: Mapping[str, int] | None = None,
        rank: Mapping[str, int] | None = None,
        skip: Sequence[str] = (),
        precision: str = "fp32",
        alternative: Mapping[str, str] | None = None,
    ) -> SubnetConfig:
        return cls(
            tuple(sorted((width or {}).items())),
            tuple(sorted((rank or {}).items())),
            tuple(sorted(skip)),
            precision,
            tuple(sorted((alternative or {}).items())),
        )

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON data; `alternative` only when some layer runs one, so a
        configuration without alternatives keeps the hash it had before supernets held them."""
        data: dict[str, Any] = {
            "width": dict(self.width),
            "rank": dict(self.rank),
            "skip": list(self.skip),
            "precision": self.precision,
        }
        if self.alternative:
            data["alternative"] = dict(self.alternative)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: object, source: str = "configuration") -> SubnetConfig:
        if not isinstance(data, Mapping):
            raise AdacompError(f"{source}: expected an object with width, rank, skip, precision")
        unknown = sorted(set(data) - {"width", "rank", "skip", "precision", "alternative"})
        if unknown:
            raise AdacompError(
                f"{source}: unknown field {unknown[0]!r}; expected width, rank, skip, precision, alternative"
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
        alternative = data.get("alternative", {})
        if not isinstance(alternative, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in alternative.items()
        ):
            raise AdacompError(f"{source}.alternative: expected an object of layer name -> technique")
        return cls.of(width, rank, skip, str(precision), alternative)

    def __str__(self) -> str:
        parts = [f"{k}:{v}" for k, v in self.width] + [f"{k}:r{v}" for k, v in self.rank]
        parts += [f"-{b}" for b in self.skip] + [f"{k}:{v}" for k, v in self.alternative]
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

    @property
    def alternatives(self) -> dict[str, tuple[str, ...]]:
        """Layer -> the alternative branches it holds."""
        return {a.name: a.techniques for a in self.layout.alternatives}

    def smallest(self, precision: str | None = None) -> SubnetConfig:
        """Narrowest widths, lowest ranks, every block skipped, every layer as its first
        alternative (a separable conv or a pooled head: smaller than any rank of the layer)."""
        return self.validate(
            SubnetConfig.of(
                {k: v[0] for k, v in self.widths.items()},
                {k: v[0] for k, v in self.ranks.items()},
                self.layout.blocks,
                precision or self.precisions[-1],
                {k: v[0] for k, v in self.alternatives.items()},
            )
        )

    def sample(self, rng: random.Random) -> SubnetConfig:
        """A random configuration; alternatives drawn last, so that a supernet without them
        samples what it sampled before they existed."""
        width = {k: rng.choice(v) for k, v in self.widths.items()}
        rank = {k: rng.choice(v) for k, v in self.ranks.items()}
        skip = [b for b in self.layout.blocks if rng.random() < 0.5]
        precision = rng.choice(self.precisions)
        alternative = {}
        for layer, techniques in self.alternatives.items():
            chosen = rng.choice((None, *techniques))
            if chosen is not None:
                alternative[layer] = chosen
        return self.validate(SubnetConfig.of(width, rank, skip, precision, alternative))

    @property
    def size(self) -> int:
        """How many configurations the space holds (precision included). A layer's rank and its
        alternatives are one choice: a layer running an alternative has no rank."""
        count = len(self.precisions) * 2 ** len(self.layout.blocks)
        for values in self.widths.values():
            count *= len(values)
        alternatives = self.alternatives
        for layer in {*self.ranks, *alternatives}:
            count *= len(self.ranks.get(layer, (0,))) + len(alternatives.get(layer, ()))
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
        held = self.alternatives
        for layer, technique in config.alternative:
            if technique not in held.get(layer, ()):
                known = ", ".join(f"{k} ({' | '.join(v)})" for k, v in held.items()) or "none"
                raise AdacompError(
                    f"configuration alternative: {layer!r} holds no {technique!r} branch; "
                    f"alternatives: {known}"
                )
        alternative = dict(config.alternative)
        full_width = {k: width.get(k, v[-1]) for k, v in self.widths.items()}
        # A layer running an alternative has no rank of its own: written at full, one spelling.
        full_rank = {k: v[-1] if k in alternative else rank.get(k, v[-1]) for k, v in self.ranks.items()}
        return SubnetConfig.of(full_width, full_rank, config.skip, config.precision, alternative)

"""Depth: a residual block skipped, run as the identity.

A block that owns its residual computes x + f(x) (then, in ResNets, an activation); without it
the model still computes, one block shallower: every weight of f gone from storage, every MAC
gone from latency (OFA's and BigNAS's elastic depth; AdaSpring's skippable blocks). It is the
only technique whose unit is a block rather than a leaf layer: a plan names the block
(`features.3: [skip_block]`), `compress` finds the model's skippable blocks (blocks.py) and
refuses any other name, and a plan may hold no step for a layer inside a block it skips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import nn

from adacomp.search_spaces.params import ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Technique, Unit


class SkipBlock(Technique):
    name = "skip_block"
    unit: ClassVar[Unit] = "block"
    summary = "run a residual block as the identity: its weights and MACs gone (depth)"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not any(True for _ in layer.children()):
            return f"applies to a residual block, not a single {type(layer).__name__} layer"
        if site.input_shape != site.output_shape:
            return "the block changes its input's shape, so the identity cannot stand in for it"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {}

    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        return nn.Identity()

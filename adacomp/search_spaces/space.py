"""The search space of a model: its compressible layers and, per layer, what applies and how.

Plain data that the platform turns into Optuna/Tune spaces or RL action sets, and that the CLI
prints. Only layers where at least one technique applies are listed. Channel pruning is offered
only where Torch-Pruning can follow the channels (techniques/channel_groups.py); where it cannot,
the space says why (`withheld`), and it keeps the model's channel structure so that a plan
drawn from it is repaired before it is proposed (repair.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.blocks import block_sites
from adacomp.search_spaces.params import ParamSpec, defaults
from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.sites import LayerSite, trace_sites
from adacomp.search_spaces.techniques import registered_techniques
from adacomp.search_spaces.techniques.channel_groups import ChannelGraph, channel_graph

CHANNEL_PRUNE = "channel_prune"


@dataclass(frozen=True)
class LayerSpace:
    """One choice of the search: a layer, or a group of layers that share it (see groups.py).

    A group's `site` is its first member's, with the MACs of all of them; `parameters` too is
    the members' total, so cost estimates see the whole group."""

    site: LayerSite
    parameters: int
    techniques: Mapping[str, Mapping[str, ParamSpec]]  # technique -> param -> spec
    members: tuple[str, ...] = ()  # a group's layers, in execution order; () for one layer

    @property
    def name(self) -> str:
        """The choice's name in sampler parameters: the layer's, or `<first member>+<n - 1>`."""
        if len(self.members) > 1:
            return f"{self.members[0]}+{len(self.members) - 1}"
        return self.site.name

    @property
    def is_block(self) -> bool:
        """Whether this entry is a skippable block (its techniques' unit), not a layer."""
        registered = registered_techniques()
        return any(registered[t].unit == "block" for t in self.techniques if t in registered)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The model layers this choice applies to."""
        return self.members or (self.site.name,)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.site.to_dict(),
            **({"group": self.name, "members": list(self.members)} if len(self.members) > 1 else {}),
            "parameters": self.parameters,
            "techniques": {
                t: {p: spec.to_dict() for p, spec in params.items()} for t, params in self.techniques.items()
            },
        }


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[LayerSpace, ...]
    # What channel pruning reaches in the model, and where it is refused: what plan repair reads.
    # Empty for a space written by hand (its plans are taken as drawn). Derived spaces (restricted,
    # grouped, bounded) keep it: build them with `replace(space, layers=...)`.
    channels: ChannelGraph = field(default_factory=ChannelGraph)

    def layer(self, name: str) -> LayerSpace:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        withheld = [{"layer": layer, "technique": t, "reason": why} for layer, t, why in self.withheld()]
        return {"layers": [layer.to_dict() for layer in self.layers], "withheld": withheld}

    def withheld(self) -> list[tuple[str, str, str]]:
        """(layer, technique, why): what a layer's own checks allow and the model rules out."""
        return [(layer, CHANNEL_PRUNE, why) for layer, why in self.channels.refused]

    def size(self) -> str:
        """What the space's entries are, for people: "53 compressible layers, 13 skippable blocks"."""
        blocks = sum(1 for layer in self.layers if layer.is_block)
        text = f"{len(self.layers) - blocks} compressible layers"
        return text + (f", {blocks} skippable blocks" if blocks else "")

    def techniques(self) -> set[str]:
        """Every technique that applies to at least one layer."""
        return {technique for layer in self.layers for technique in layer.techniques}

    def restricted_to(self, techniques: Collection[str]) -> SearchSpace:
        """The same space with only `techniques` (a user's "prune and quantize, nothing else", or
        one technique's own front to compare combinations against); layers where none of them
        applies are dropped."""
        allowed = set(techniques)
        layers = []
        for layer in self.layers:
            kept = {name: params for name, params in layer.techniques.items() if name in allowed}
            if kept:
                layers.append(replace(layer, techniques=kept))
        channels = self.channels if CHANNEL_PRUNE in allowed else ChannelGraph()
        return replace(self, layers=tuple(layers), channels=channels)

    def example_plan(self) -> CompressionPlan:
        """A valid starting plan: one module technique per layer where one applies, int8 export.

        Low rank on fully-connected layers, depthwise-separable on convs, default parameters.
        """
        preferred = ("low_rank", "depthwise_separable", "magnitude_prune")
        layers: dict[str, list[Step]] = {}
        for layer in self.layers:
            steps: list[Step] = []
            for technique in preferred:
                if technique in layer.techniques and not layer.site.is_output:
                    steps.append(Step.of(technique, **defaults(layer.techniques[technique])))
                    break
            if "quantize" in layer.techniques:
                steps.append(Step.of("quantize", precision="int8"))
            layers.update(dict.fromkeys(layer.layer_names, steps) if steps else {})
        return CompressionPlan.from_mapping(layers)


def build_space(model: nn.Module, example_input: torch.Tensor, *, blocks: bool = False) -> SearchSpace:
    """Every leaf layer some technique applies to, in execution order; with `blocks`, also every
    skippable block (its entry just before its first layer) with the block techniques."""
    sites = trace_sites(model, example_input)
    layers = [
        entry
        for name, site in sorted(sites.items(), key=lambda kv: kv[1].order)
        if (entry := _entry(model.get_submodule(name), site, "layer")) is not None
    ]
    prunable = [layer.site.name for layer in layers if CHANNEL_PRUNE in layer.techniques]
    channels = channel_graph(model, example_input, sites, prunable) if prunable else ChannelGraph()
    layers = _without_refused(layers, channels)
    if blocks:
        layers += _block_entries(model, example_input, sites)
    return SearchSpace(tuple(sorted(layers, key=execution_order)), channels)


def _without_refused(layers: Sequence[LayerSpace], channels: ChannelGraph) -> list[LayerSpace]:
    """`layers` without channel pruning where the model's structure rules it out (an entry left
    with no technique goes)."""
    refused = {layer for layer, _ in channels.refused}
    kept = []
    for layer in layers:
        if layer.site.name in refused:
            techniques = {t: p for t, p in layer.techniques.items() if t != CHANNEL_PRUNE}
            layer = replace(layer, techniques=techniques)
        if layer.techniques:
            kept.append(layer)
    return kept


def _entry(module: nn.Module, site: LayerSite, unit: str) -> LayerSpace | None:
    applicable = {
        name: dict(t.space(module, site))
        for name, t in registered_techniques().items()
        if t.unit == unit and t.applies_to(module, site)
    }
    if not applicable:
        return None
    return LayerSpace(
        site=site, parameters=sum(p.numel() for p in module.parameters()), techniques=applicable
    )


def _block_entries(
    model: nn.Module, example_input: torch.Tensor, sites: Mapping[str, LayerSite]
) -> list[LayerSpace]:
    """One entry per skippable block of `model` (blocks.py), with the techniques whose unit is a
    block; none where torch.fx cannot trace the model (depth then is simply not offered)."""
    try:
        found = block_sites(model, example_input, sites)
    except AdacompError:
        return []
    entries = (_entry(model.get_submodule(name), site, "block") for name, site in found.items())
    return [entry for entry in entries if entry is not None]


def execution_order(layer: LayerSpace) -> tuple[int, int]:
    """Where an entry runs; a block just before its own first layer."""
    return (layer.site.order, 0 if layer.is_block else 1)

"""Search spaces that scale with depth: layers that share one choice, found from the structure.

A MobileNetV2 has 53 compressible layers; giving each its own technique, parameters and
sparsity is a 150-dimensional space that 60 trials of NSGA-II or TPE cannot explore. But its
layers come in a few roles repeated stage after stage (expand 1x1, depthwise 3x3, project 1x1),
and what suits one block of a stage suits its neighbours. Groupings, finest to coarsest:

- `layer`: every layer its own choice (small models);
- `shape`: layers of the same type, role and shapes share one (the repeated blocks of a stage);
- `block`: layers of the same role at the same feature-map resolution share one, whatever
  their width (one channel ratio per stage and role: the stage-wise knob of AMC/NetAdapt);
- `auto`: `layer` up to 12 layers, then `shape` while it leaves at most 16 choices, else `block`.

A group only holds layers whose techniques and parameter ranges are the same, and the output
layer and the first layer always stand alone (they are where compression hurts most), and so
does each skippable block (skipping one block of a stage is not skipping all of them). A
grouped space is a plain SearchSpace whose entries carry their `members`, so every sampler,
the RL agent and `plan_from_params` work on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from torch import nn

from adacomp.search_spaces.space import LayerSpace, SearchSpace

Grouping = Literal["auto", "block", "shape", "layer"]
GROUPINGS: tuple[Grouping, ...] = ("auto", "block", "shape", "layer")
AUTO_LAYERS = 12  # up to this many layers, every layer keeps its own choice
AUTO_SHAPE_GROUPS = 16  # `shape` while it leaves at most this many choices, else `block`


def role(module: nn.Module) -> tuple[object, ...]:
    """What a layer does, independent of its width: type, kernel, stride, depthwise or not."""
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return (type(module).__name__, module.kernel_size, module.stride, depthwise)
    return (type(module).__name__,)


def _techniques_key(layer: LayerSpace) -> tuple[object, ...]:
    return tuple(sorted((t, tuple(sorted(p.items()))) for t, p in layer.techniques.items()))


def _key(
    model: nn.Module, layer: LayerSpace, grouping: Grouping, index: int, last: int
) -> tuple[object, ...]:
    site = layer.site
    if grouping == "layer" or index in (0, last) or site.is_output or layer.is_block:
        return ("alone", site.name)
    common = (role(model.get_submodule(site.name)), _techniques_key(layer))
    if grouping == "shape":
        return (*common, site.input_shape, site.output_shape)
    # block: the same role at the same resolution, and whether it widens, keeps or narrows
    in_ch = site.input_shape[0] if site.input_shape else 0
    out_ch = site.output_shape[0] if site.output_shape else 0
    direction = (out_ch > in_ch) - (out_ch < in_ch)
    return (*common, site.output_shape[1:], direction)


def _merge(layers: Sequence[LayerSpace]) -> LayerSpace:
    if len(layers) == 1:
        return layers[0]
    first = layers[0]
    return replace(
        first,
        site=replace(first.site, macs=sum(layer.site.macs for layer in layers)),
        parameters=sum(layer.parameters for layer in layers),
        members=tuple(layer.site.name for layer in layers),
    )


def group_layers(space: SearchSpace, model: nn.Module, grouping: Grouping) -> SearchSpace:
    """`space` (one entry per layer, as build_space makes it) with layers grouped; groups are
    ordered by their first member, so the order of the model is kept."""
    if any(len(layer.members) > 1 for layer in space.layers):
        raise ValueError("group_layers takes a space of single layers")
    grouping = resolve_grouping(space, model, grouping)
    groups: dict[tuple[object, ...], list[LayerSpace]] = {}
    last = len(space.layers) - 1
    for index, layer in enumerate(space.layers):
        groups.setdefault(_key(model, layer, grouping, index, last), []).append(layer)
    return replace(space, layers=tuple(_merge(members) for members in groups.values()))


def resolve_grouping(space: SearchSpace, model: nn.Module, grouping: Grouping) -> Grouping:
    """What `auto` means for this model (see the module docstring); any other mode as given."""
    if grouping != "auto":
        return grouping
    if len(space.layers) <= AUTO_LAYERS:
        return "layer"
    if len(group_layers(space, model, "shape").layers) <= AUTO_SHAPE_GROUPS:
        return "shape"
    return "block"

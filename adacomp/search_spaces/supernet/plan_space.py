"""The plan space a supernet holds: the search's choices, exactly the supernet's configurations.

A search in supernet mode (`evaluation: supernet`) samples compression plans like any search,
but every plan it proposes must be one the trained supernet can extract (plans.py's
`config_of`). This builds the ordinary `SearchSpace` (one `LayerSpace` per layer, the type every
sampler, the RL agent and `plan_from_params` read) whose parameters are *choices* instead of
ranges, one per configuration the supernet holds:

- a width group's producer: `channel_prune` with `ratio` among 1 - f for the supernet's width
  fractions f (the nominal ratio when channel pruning's own rounding keeps exactly the
  supernet's width, so 0.25 / 0.5 / 0.75 read as what they are and layers of one role share
  them; the exact ratio otherwise);
- a rank-elastic layer: `low_rank` with `rank_fraction` among the supernet's rank fractions
  whose factorisation is smaller than the dense layer;
- every weighted layer: `quantize` at the supernet's precisions other than fp32 (the precision
  is one knob of the whole model, as the supernet exports it);
- a skippable block: `skip_block` (depth), an entry of its own placed before the block's
  layers, whose steps a plan that skips the block leaves out;
- a layer holding alternative branches: `depthwise_separable` (multiplier 1) or `gap_head`,
  the form the supernet trained.

A layer takes one main technique (the plan space's rule): width or rank, not both. A choice the
technique's own range refuses (a width fraction under 0.1 is a ratio over 0.9) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from adacomp.errors import AdacompError, shown
from adacomp.search_spaces.params import ChoiceParam, ParamSpec, ParamValue
from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.space import LayerSpace, SearchSpace, build_space
from adacomp.search_spaces.supernet.arch import SubnetConfig, SupernetSpace
from adacomp.search_spaces.supernet.layout import RankLayer, WidthGroup
from adacomp.search_spaces.supernet.plans import ALTERNATIVE_PARAMS, config_of, exact_fraction, exact_ratio
from adacomp.search_spaces.supernet.supernet import Supernet
from adacomp.search_spaces.techniques import registered_techniques
from adacomp.search_spaces.techniques.channel_prune import aligned_channels, kept_channels

__all__ = ["in_space_terms", "supernet_plan_space"]

# The order a sampler sees precisions in: plan_space.PRECISIONS's, fp32 being "none".
_PRECISION_ORDER = ("int8", "int8_per_tensor", "fp16", "int8_weights")


def width_ratios(group: WidthGroup, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """The channel_prune ratios that keep exactly the widths the supernet holds below full."""
    ratios: dict[int, float] = {}
    c = group.channels
    for f in sorted(fractions, reverse=True):
        width = aligned_channels(c, max(1, round(f * c)))
        if width >= c or width in ratios:
            continue
        nominal = round(1.0 - f, 6)
        ratios[width] = nominal if kept_channels(c, nominal) == width else exact_ratio(width, c)
    return tuple(ratios.values())


def rank_fractions(supernet: Supernet, layer: RankLayer) -> tuple[float, ...]:
    """The low_rank fractions at ranks the supernet holds that every plan of the space can take.

    The layer keeps its own width (one main technique per layer) but its input may be pruned by
    the layer before; a fraction is offered only where, at the narrowest input the supernet
    holds, it still means the same rank (the layer's full rank is its output) and the
    factorisation is still smaller than the dense layer: then no combination refuses it."""
    space = supernet.space
    own = {g.producer for g in space.layout.groups if g.producer == layer.name}
    narrowest = {p: (w[-1] if p in own else w[0]) for p, w in space.widths.items()}
    chosen: dict[int, float] = {}
    for f in sorted(space.rank_fractions):
        rank = max(1, math.ceil(f * layer.max_rank))
        if rank in chosen or rank not in space.ranks[layer.name]:
            continue
        with supernet.active(SubnetConfig.of(narrowest, {layer.name: rank})):
            elastic = supernet.elastic_layer(layer.name)
            full = min(elastic.active_out, elastic.active_in * elastic.kernel_numel)
            if full != layer.max_rank or not elastic.factorised_is_smaller():
                continue
        nominal = round(f, 6)
        exact = max(1, math.ceil(nominal * full)) == rank
        chosen[rank] = nominal if exact else exact_fraction(rank, full)
    return tuple(chosen.values())


def _choice(values: tuple[float, ...] | tuple[str, ...] | tuple[int, ...]) -> ChoiceParam:
    return ChoiceParam(tuple(values), default=values[0])


def _valid(technique: str, module: nn.Module, layer: LayerSpace, spec: Mapping[str, ParamSpec]) -> bool:
    """Whether every offered value is inside the technique's own range for this layer."""
    own = registered_techniques()[technique].space(module, layer.site)
    try:
        for key, param in spec.items():
            assert isinstance(param, ChoiceParam)
            for value in param.choices:
                own[key].validate(key, value)
    except Exception:
        return False
    return True


def supernet_plan_space(supernet: Supernet, model: nn.Module, example_input: torch.Tensor) -> SearchSpace:
    """The plan space of `supernet`, built from the uncompressed `model` it was built from."""
    space: SupernetSpace = supernet.space
    groups = {g.producer: g for g in space.layout.groups}
    ranked = {r.name: r for r in space.layout.rank_layers}
    precisions = tuple(p for p in _PRECISION_ORDER if p in space.precisions)
    layers = []
    held_blocks = set(space.layout.blocks)
    for layer in build_space(model, example_input, blocks=bool(held_blocks)).layers:
        name = layer.site.name
        if layer.is_block:  # offered where the supernet can skip it (no elastic width crosses it)
            if name in held_blocks:
                layers.append(layer)
            continue
        module = model.get_submodule(name)
        techniques: dict[str, dict[str, ParamSpec]] = {}
        offered: dict[str, dict[str, ParamSpec]] = {}
        if name in groups and (ratios := width_ratios(groups[name], space.width_fractions)):
            offered["channel_prune"] = {"ratio": _choice(ratios)}
        if name in ranked and (fractions := rank_fractions(supernet, ranked[name])):
            offered["low_rank"] = {"rank_fraction": _choice(fractions)}
        for technique in space.alternatives.get(name, ()):
            fixed = ALTERNATIVE_PARAMS[technique]
            offered[technique] = {key: _choice((value,)) for key, value in fixed.items()}
        if precisions and "quantize" in layer.techniques:
            offered["quantize"] = {"precision": _choice(precisions)}
        for technique, spec in offered.items():
            if technique in layer.techniques and _valid(technique, module, layer, spec):
                techniques[technique] = spec
        if techniques:
            layers.append(LayerSpace(layer.site, layer.parameters, techniques))
    return SearchSpace(tuple(layers))


def in_space_terms(
    plan: CompressionPlan, space: SearchSpace, supernet: Supernet, weighted: Sequence[str]
) -> CompressionPlan:
    """`plan` written with the values `space` offers (a warm start's plan seeds the samplers, whose
    choices are exactly those): each value that is not one of its layer's choices becomes the
    choice that selects the same configuration (channel_prune 0.3 of 32 channels keeps 24, as
    0.25 does). One line naming the layer when no choice does."""
    target = config_of(supernet, plan, weighted)
    layers = {layer.site.name: layer for layer in space.layers}
    written: dict[str, list[Step]] = {}
    for name, steps in plan.layers:
        written[name] = []
        for step in steps:
            spec = layers[name].techniques.get(step.technique, {}) if name in layers else {}
            values = dict(step.kwargs)
            for key, param in spec.items():
                if isinstance(param, ChoiceParam) and values.get(key) not in param.choices:
                    values[key] = _same_choice(plan, name, step, key, param, supernet, weighted, target)
            written[name].append(Step.of(step.technique, **values))
    return CompressionPlan.from_mapping(written)


def _same_choice(
    plan: CompressionPlan,
    name: str,
    step: Step,
    key: str,
    param: ChoiceParam,
    supernet: Supernet,
    weighted: Sequence[str],
    target: SubnetConfig,
) -> ParamValue:
    for choice in param.choices:
        trial = {
            layer: [
                Step.of(s.technique, **{**s.kwargs, key: choice}) if (layer, s) == (name, step) else s
                for s in steps
            ]
            for layer, steps in plan.layers
        }
        if config_of(supernet, CompressionPlan.from_mapping(trial), weighted) == target:
            return choice
    offered = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in param.choices)
    raise AdacompError(f"plan layer {shown(name)}: {step}: the search offers {key} {offered} here")

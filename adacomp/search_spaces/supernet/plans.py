"""A supernet's configurations as compression plans: one vocabulary for the search and the supernet.

The supernet's configuration space is a plan space: an elastic width is `channel_prune` of the
group's producer, an elastic rank is `low_rank` of the layer, a precision is `quantize` of every
weighted layer at that precision. `plan_of` writes a configuration as the plan that builds the
same architecture; `config_of` reads a plan back, refusing in one line, naming the layer, what
the supernet cannot express: a technique it holds no alternative for, a width or rank between
its choices, quantization of some layers only, or at a precision it was not given.

The plan means what `compress` does with it: every channel prune first, then `low_rank` of
the *pruned* layer, its fraction of that layer's full rank (min(out, in x kernel)). So a width
`w` of `c` channels is ratio 1 - w/c, and a rank `k` of a layer that is `o` by `i x kernel`
once pruned is fraction k / min(o, i x kernel), each written so that the technique's own
rounding (`kept_channels`, `rank_for`) gives back exactly `w` and `k`. A rank that would not
make the layer smaller is no factorisation at all: the supernet extracts that layer dense, so
its plan has no `low_rank` step, and a plan asking for one there is refused.

A skipped block is `skip_block` on the block (depth); the layers inside it have no steps of
their own (they are gone), and "every weighted layer at one precision" means every weighted
layer that is left.

A layer running an alternative branch is that technique's step on the layer, after its
channel_prune if it has one: `depthwise_separable` at multiplier 1 (the form the supernet
trains) or `gap_head`; it has no low_rank step (the branch replaces the layer's weight).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from adacomp.errors import AdacompError, shown
from adacomp.search_spaces.blocks import inside
from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.supernet.arch import SubnetConfig, SupernetSpace
from adacomp.search_spaces.supernet.elastic import ElasticWeighted
from adacomp.search_spaces.supernet.supernet import Supernet
from adacomp.search_spaces.techniques.channel_prune import kept_channels

__all__ = ["SUPERNET_TECHNIQUES", "config_of", "plan_of"]

# The techniques a supernet holds alternatives for, in the order a layer's steps apply them.
SUPERNET_TECHNIQUES = (
    "skip_block",
    "channel_prune",
    "low_rank",
    "depthwise_separable",
    "gap_head",
    "quantize",
)
# The parameters of an alternative's step: the one form of it the supernet holds.
ALTERNATIVE_PARAMS: dict[str, dict[str, int]] = {"depthwise_separable": {"multiplier": 1}, "gap_head": {}}


def exact_ratio(width: int, channels: int) -> float:
    """The channel_prune ratio whose kept count is `width` of `channels` (rounded to 6 places)."""
    ratio = round(1.0 - width / channels, 6)
    if kept_channels(channels, ratio) != width:  # the 6-place rounding crossed a half: exact
        ratio = 1.0 - width / channels
    return ratio


def exact_fraction(rank: int, full: int) -> float:
    """The low_rank fraction whose rank (ceil(fraction * full), at least 1) is `rank`."""
    fraction = round(rank / full, 6)
    if max(1, math.ceil(fraction * full)) > rank:  # rounded up past k / full (2/3 -> 0.666667)
        fraction = rank / full
    while max(1, math.ceil(fraction * full)) > rank:  # float error above k: just below k / full
        fraction = math.nextafter(fraction, 0.0)
    return fraction


def plan_of(supernet: Supernet, config: SubnetConfig, weighted: Sequence[str]) -> CompressionPlan:
    """The plan that builds `config`'s architecture from the uncompressed model, whose weighted
    (Conv, Linear) layers are `weighted`."""
    space = supernet.space
    config = space.validate(config)
    steps: dict[str, list[Step]] = {block: [Step.of("skip_block")] for block in config.skip}

    def gone(layer: str) -> bool:
        return any(inside(layer, block) for block in config.skip)

    groups = {g.producer: g for g in space.layout.groups}
    for producer, width in config.width:
        group = groups[producer]
        running = [name for name in group.producers if not gone(name)]  # a joined one may be skipped
        if width < group.channels and running:
            steps.setdefault(running[0], []).append(
                Step.of("channel_prune", ratio=exact_ratio(width, group.channels))
            )
    with supernet.active(config):
        for rank_layer in space.layout.rank_layers:
            layer = supernet.elastic_layer(rank_layer.name)
            if layer.factorised_is_smaller() and not gone(rank_layer.name):
                fraction = exact_fraction(layer.active_rank, _full_rank(layer))
                steps.setdefault(rank_layer.name, []).append(Step.of("low_rank", rank_fraction=fraction))
    for layer_name, technique in config.alternative:
        if not gone(layer_name):
            steps.setdefault(layer_name, []).append(Step.of(technique, **ALTERNATIVE_PARAMS[technique]))
    if config.precision != "fp32":
        for name in weighted:
            if not gone(name):
                steps.setdefault(name, []).append(Step.of("quantize", precision=config.precision))
    return CompressionPlan.from_mapping(steps)


def _full_rank(layer: ElasticWeighted) -> int:
    """The full rank of the layer as it is active (pruned): what `low_rank` takes a fraction of."""
    return min(layer.active_out, layer.active_in * layer.kernel_numel)


def config_of(supernet: Supernet, plan: CompressionPlan, weighted: Sequence[str]) -> SubnetConfig:
    """The configuration `plan` selects in the supernet; one line naming the layer when the
    supernet cannot express it."""
    space = supernet.space
    widths, ranks = dict(space.largest().width), dict(space.largest().rank)
    channels = {g.producer: g.channels for g in space.layout.groups}
    # a residual stream's producers share one width, named after its first: pruning any of them
    # prunes the stream (as channel_prune does in a fine-tuned trial)
    group_of = {name: g.producer for g in space.layout.groups for name in g.producers}
    width_from: dict[str, str] = {}  # group -> the plan layer that set its width
    full = {r.name: r.max_rank for r in space.layout.rank_layers}
    precisions: dict[str, str] = {}
    factorised: dict[str, tuple[str, float]] = {}  # layer -> (where, fraction), read once widths are known
    alternative: dict[str, str] = {}
    skip = _skipped(space, plan)
    for layer, steps in plan.layers:
        seen: list[str] = []
        for step in steps:
            where = f"plan layer {shown(layer)}: {step}"
            if step.technique not in SUPERNET_TECHNIQUES:
                raise AdacompError(
                    f"{where}: the supernet holds no alternative for {step.technique!r} "
                    f"(it holds {', '.join(SUPERNET_TECHNIQUES)})"
                )
            if step.technique in seen:
                raise AdacompError(f"{where}: {step.technique} twice on one layer")
            seen.append(step.technique)
            if step.technique == "skip_block":
                continue  # read by _skipped
            if step.technique == "channel_prune":
                group = group_of.get(layer, layer)
                _elastic(where, group, channels, "width-elastic")
                if group in width_from:
                    raise AdacompError(
                        f"{where}: a residual add joins its channels with those of "
                        f"{shown(width_from[group])}, which the plan prunes too; prune one of them"
                    )
                width_from[group] = layer
                width = kept_channels(channels[group], float(step.kwargs["ratio"]))
                widths[group] = _held(where, width, channels[group], space.widths[group])
            elif step.technique == "low_rank":
                _elastic(where, layer, full, "rank-elastic")
                factorised[layer] = (where, float(step.kwargs["rank_fraction"]))
            elif step.technique in ALTERNATIVE_PARAMS:
                alternative[layer] = _alternative(where, space, layer, step)
            else:
                precisions[layer] = str(step.kwargs["precision"])
    for layer in set(alternative) & set(factorised):
        raise AdacompError(
            f"plan layer {shown(layer)}: low_rank and {alternative[layer]} on one layer; "
            "the supernet runs a layer as one or the other"
        )
    left = [name for name in weighted if not any(inside(name, block) for block in skip)]
    precision = _precision(space, precisions, left)
    with supernet.active(SubnetConfig.of(widths, ranks, skip, precision, alternative)):
        for layer_name, (where, fraction) in factorised.items():
            elastic = supernet.elastic_layer(layer_name)
            pruned = _full_rank(elastic)
            rank = _held(where, max(1, math.ceil(fraction * pruned)), pruned, space.ranks[layer_name])
            elastic.active_rank = rank
            if not elastic.factorised_is_smaller():
                shape = f"{elastic.active_out} x {elastic.active_in * elastic.kernel_numel}"
                raise AdacompError(
                    f"{where}: rank {rank} of a {shape} "
                    "layer is no smaller than the layer itself; the supernet keeps it dense (lower the "
                    "fraction or leave low_rank out)"
                )
            ranks[layer_name] = rank
    return space.validate(SubnetConfig.of(widths, ranks, skip, precision, alternative))


def _alternative(where: str, space: SupernetSpace, layer: str, step: Step) -> str:
    """The alternative branch a step selects; one line when the layer holds no such branch or
    the step asks for a form of it the supernet did not train."""
    held = space.alternatives
    if step.technique not in held.get(layer, ()):
        known = ", ".join(f"{k} ({' | '.join(v)})" for k, v in held.items()) or "none"
        raise AdacompError(
            f"{where}: the supernet holds no {step.technique} branch here (alternatives: {known})"
        )
    wanted = ALTERNATIVE_PARAMS[step.technique]
    if any(step.kwargs.get(k) != v for k, v in wanted.items()):
        form = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise AdacompError(f"{where}: the supernet holds {step.technique} with {form} only")
    return step.technique


def _skipped(space: SupernetSpace, plan: CompressionPlan) -> tuple[str, ...]:
    """The blocks `plan` skips; one line when one is not skippable here or a layer inside a
    skipped block has steps of its own."""
    skip = tuple(layer for layer, steps in plan.layers if any(s.technique == "skip_block" for s in steps))
    for block in skip:
        if block not in space.layout.blocks:
            held = ", ".join(space.layout.blocks) or "none"
            raise AdacompError(
                f"plan layer {shown(block)}: skip_block: not a skippable block of this supernet "
                f"(skippable: {held})"
            )
        for layer, _ in plan.layers:
            if inside(layer, block):
                raise AdacompError(
                    f"plan layer {shown(layer)} is inside {shown(block)}, which the plan skips; "
                    "its steps could not take effect"
                )
    return skip


def _elastic(where: str, layer: str, sizes: Mapping[str, int], kind: str) -> None:
    if layer not in sizes:
        raise AdacompError(f"{where}: not {kind} in this supernet ({kind}: {', '.join(sizes) or 'none'})")


def _held(where: str, value: int, size: int, choices: tuple[int, ...]) -> int:
    if value not in choices:
        held = ", ".join(str(v) for v in choices)
        raise AdacompError(f"{where}: gives {value} of {size}; the supernet holds {held}")
    return value


def _precision(space: SupernetSpace, precisions: Mapping[str, str], weighted: Sequence[str]) -> str:
    """The one precision of the whole model (fp32 when nothing is quantized)."""
    if not precisions:
        chosen = "fp32"
    else:
        distinct = sorted(set(precisions.values()))
        if len(distinct) > 1:
            raise AdacompError(
                f"plan: quantize at {' and '.join(distinct)}; the supernet exports one precision"
            )
        missing = [layer for layer in weighted if layer not in precisions]
        if missing:
            raise AdacompError(
                f"plan layer {shown(missing[0])}: not quantized while others are; the supernet quantizes "
                "every weighted layer or none"
            )
        chosen = distinct[0]
    if chosen not in space.precisions:
        raise AdacompError(
            f"plan: precision {chosen!r} is not one this supernet was given ({', '.join(space.precisions)})"
        )
    return chosen

"""Plans that build: a drawn plan repaired before a strategy proposes it.

One layer's choice can rule out another's. Channel pruning shrinks the layers that read the
pruned channels (and, across a residual add, the layers that write them), and a technique that
applies to a layer as the model has it may not apply to the layer the pruning leaves: `fire`
squeezes at least 4 input channels, and SmallCNN's conv2 reads 3 of conv1's 8 once 0.7 of them
are pruned. `compress` applies the structure first and checks each module step on the layer as
it is then, so such a plan fails there (a calibration run died on exactly this one).

`repaired` works out the same channel counts from the space's channel graph
(techniques/channel_groups.py), without the model, and leaves out each module step that would
not apply: the layer keeps what else the plan gave it. A plan that builds comes back unchanged,
so a search over a model whose plans all built proposes what it always did.
"""

from __future__ import annotations

from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.techniques import Stage, get_technique
from adacomp.search_spaces.techniques.channel_groups import ChannelGraph, Side
from adacomp.search_spaces.techniques.channel_prune import kept_channels

_INDEX: dict[Side, int] = {"in": 0, "out": 1}


def repaired(plan: CompressionPlan, channels: ChannelGraph) -> CompressionPlan:
    """`plan` without the module steps its own channel pruning rules out (see the module docstring)."""
    widths = pruned_widths(plan, channels)
    if not widths:
        return plan
    return CompressionPlan.from_mapping(
        {name: [step for step in steps if fits(step, widths.get(name))] for name, steps in plan}
    )


def pruned_widths(plan: CompressionPlan, channels: ChannelGraph) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) of every layer the plan's channel pruning shrinks, counted as
    `ChannelPrune.apply_to_model` prunes: its targets in execution order, each cut to its kept
    count unless a coupled layer's pruning has already cut it that far."""
    widths = {name: [inputs, outputs] for name, inputs, outputs in channels.widths}
    shrunk: set[str] = set()
    for group in channels.groups:
        ratio = _ratio(plan.steps_for(group.layer))
        if ratio is None:
            continue
        current = widths[group.layer][_INDEX["out"]]
        removed = current - kept_channels(group.channels, ratio)
        if removed <= 0:
            continue
        for shrink in group.shrinks:
            widths[shrink.layer][_INDEX[shrink.side]] -= removed * shrink.per_channel
            shrunk.add(shrink.layer)
    return {name: (widths[name][0], widths[name][1]) for name in shrunk}


def fits(step: Step, width: tuple[int, int] | None) -> bool:
    """Whether a module step still applies to a layer left with `width` (inputs, outputs); steps
    of the other stages do not depend on the layer's channels."""
    technique = get_technique(step.technique)
    if width is None or technique.stage is not Stage.MODULE:
        return True
    fewest_in, fewest_out = technique.fewest_channels
    return width[0] >= fewest_in and width[1] >= fewest_out


def _ratio(steps: tuple[Step, ...]) -> float | None:
    for step in steps:
        if step.technique == "channel_prune":
            return float(step.kwargs["ratio"])
    return None

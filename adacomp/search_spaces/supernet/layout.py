"""Which parts of a user's model can be elastic, found by tracing it (torch.fx).

Width: the output channels of a conv/linear ("producer") can shrink when everything that reads
them follows along: BatchNorm and depthwise convs slice the same channels, the next conv/linear
drops the matching inputs (a Flatten in between turns one channel into H*W features). A
residual add pins them, unless `residual_width` joins its two producers into one group (the sum
has one set of channels: a stream). Anything else touching them (a concat, the model's output,
an op we do not know) pins them. Rank: Linear and ungrouped convs whose smallest allowed rank
saves parameters.
Depth: shape-preserving blocks that own their residual (skipping them is the identity) and that
no elastic width crosses. Alternatives (AdaSpring's alternative operators): a conv with a
spatial kernel may run as its depthwise-separable form, a Linear reading a flattened map as a
global-average-pooling head; both follow the layer's elastic widths, so they combine with the
pruning of the layers around them. Everything left out is reported with the reason.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.blocks import RESIDUAL_OPS, block_candidates, owns_residual, trace_graph

__all__ = ["ALTERNATIVES", "Alternative", "RankLayer", "SupernetLayout", "WidthGroup", "analyse_model"]

# The structural techniques a supernet can hold as alternative branches of a layer, in the
# order a configuration names them. Fire is not one: its output is the concatenation of two
# expand convs, so the first k output channels (an elastic width) would mix both branches'
# channels; a supernet would have to reorder them per width.
ALTERNATIVES = ("depthwise_separable", "gap_head")

# Modules and functions that keep channels where they are and do not mix them.
_TRANSPARENT_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_TRANSPARENT_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.hardswish,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
_TRANSPARENT_METHODS = {"relu", "sigmoid", "tanh"}


@dataclass(frozen=True)
class WidthGroup:
    """Output channels of `producer` and everything that must follow them.

    `joined` are the other producers whose outputs a residual add sums with `producer`'s (a
    ResNet stage's stem or shortcut conv and every block's last conv): the sum has one set of
    channels, so they all keep the same ones. `producer` is the one a plan's `channel_prune`
    names (the first outside any skippable block, so skipping a block never drops the width).
    """

    producer: str
    channels: int
    channelwise: tuple[str, ...]  # BatchNorm / depthwise convs slicing the same channels
    consumers: tuple[tuple[str, int], ...]  # (layer, input features per channel)
    joined: tuple[str, ...] = ()

    @property
    def producers(self) -> tuple[str, ...]:
        return (self.producer, *self.joined)


@dataclass(frozen=True)
class RankLayer:
    name: str
    max_rank: int


@dataclass(frozen=True)
class Alternative:
    """A layer that may run as another operator: `techniques` among ALTERNATIVES; `positions`
    is the flattened map's H*W a gap_head averages (1 where there is no gap_head)."""

    name: str
    techniques: tuple[str, ...]
    positions: int = 1


@dataclass(frozen=True)
class SupernetLayout:
    groups: tuple[WidthGroup, ...]
    rank_layers: tuple[RankLayer, ...]
    blocks: tuple[str, ...]  # skippable, in execution order
    fixed: tuple[tuple[str, str], ...]  # (layer or block, why it is not elastic)
    alternatives: tuple[Alternative, ...] = ()
    no_alternative: tuple[tuple[str, str], ...] = ()  # (weighted layer, why no alternative applies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [
                {
                    "producer": g.producer,
                    "channels": g.channels,
                    "channelwise": list(g.channelwise),
                    "consumers": [[name, factor] for name, factor in g.consumers],
                    "joined": list(g.joined),
                }
                for g in self.groups
            ],
            "rank_layers": [{"name": r.name, "max_rank": r.max_rank} for r in self.rank_layers],
            "blocks": list(self.blocks),
            "fixed": [[name, why] for name, why in self.fixed],
            "alternatives": [
                {"name": a.name, "techniques": list(a.techniques), "positions": a.positions}
                for a in self.alternatives
            ],
            "no_alternative": [[name, why] for name, why in self.no_alternative],
        }

    def report(self) -> str:
        """What became elastic and what did not, for people."""
        widths = [g.producer + (f" (with {', '.join(g.joined)})" if g.joined else "") for g in self.groups]
        lines = [f"width-elastic: {', '.join(widths) or '-'}"]
        lines.append(f"rank-elastic: {', '.join(r.name for r in self.rank_layers) or '-'}")
        lines.append(f"skippable blocks: {', '.join(self.blocks) or '-'}")
        held = [f"{a.name} ({' | '.join(a.techniques)})" for a in self.alternatives]
        lines.append(f"alternatives: {', '.join(held) or '-'}")
        lines += [f"fixed {name}: {why}" for name, why in self.fixed]
        lines += [f"no alternative for {name}: {why}" for name, why in self.no_alternative]
        return "\n".join(lines)


def is_weighted(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.Conv1d | nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
    )


def is_channelwise(module: nn.Module) -> bool:
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return module.affine and module.track_running_stats
    return (
        isinstance(module, nn.Conv1d | nn.Conv2d)
        and module.groups == module.in_channels == module.out_channels
        and module.groups > 1
        and module.padding_mode == "zeros"
    )


@dataclass(eq=False)
class _Space:
    producers: list[str]
    channels: int
    channelwise: list[str]
    consumers: list[tuple[str, int]]
    pinned: str | None = None
    merged_into: _Space | None = None  # a residual add joined it to another space

    def root(self) -> _Space:
        space = self
        while space.merged_into is not None:
            space = space.merged_into
        return space

    def absorb(self, other: _Space) -> None:
        """`other`'s channels are summed with these: from now on one space."""
        self.producers += other.producers
        self.channelwise += other.channelwise
        self.consumers += other.consumers
        self.pinned = self.pinned or other.pinned
        other.merged_into = self


# Ops that sum two tensors channel by channel: a residual join. Where both sides are elastic
# channels of the same count, their producers share one width (the sum has one set of channels).
_SUM_FUNCTIONS: set[Any] = {operator.add, operator.iadd, torch.add}
_SUM_METHODS = {"add", "add_"}


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _width_spaces(
    traced: torch.fx.GraphModule, model: nn.Module, *, join_residuals: bool = True
) -> tuple[list[_Space], list[str]]:
    """Follow channels through the graph; returns every space (a producer's, or several joined by
    residual adds) and the weighted layers."""
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in traced.graph.nodes if n.op == "call_module")
    space_of: dict[torch.fx.Node, tuple[_Space, int] | None] = {}
    spaces: list[_Space] = []
    weighted: list[str] = []

    def pin_inputs(node: torch.fx.Node, why: str) -> None:
        for arg in node.all_input_nodes:
            found = _found(space_of, arg)
            if found is not None and found[0].pinned is None:
                found[0].pinned = why

    for node in traced.graph.nodes:
        incoming = _found(space_of, node.args[0]) if node.args else None
        result: tuple[_Space, int] | None = None
        if node.op == "call_module":
            name = str(node.target)
            module = modules[name]
            if calls[node.target] > 1:
                pin_inputs(node, f"{name} is called more than once")
                if is_weighted(module):
                    weighted.append(name)
            elif is_weighted(module):
                weighted.append(name)
                in_shape = _shape(node.args[0])
                if incoming is not None:
                    space, factor = incoming
                    if isinstance(module, nn.Linear) and (in_shape is None or len(in_shape) != 2):
                        space.pinned = space.pinned or f"{name} reads channels as features of a >2-D tensor"
                    elif not isinstance(module, nn.Linear) and factor != 1:
                        space.pinned = space.pinned or f"{name} reads a flattened map"
                    else:
                        space.consumers.append((name, factor))
                channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
                new = _Space([name], int(channels), [], [])
                spaces.append(new)
                result = (new, 1)
            elif is_channelwise(module):
                if incoming is not None and incoming[1] == 1:
                    incoming[0].channelwise.append(name)
                    result = incoming
                else:
                    pin_inputs(node, f"{name} follows channels that are not one producer's")
            elif isinstance(module, _TRANSPARENT_MODULES):
                result = incoming
            elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
                result = _flattened(node, incoming)
            else:
                pin_inputs(node, f"{type(module).__name__} {name} reads them")
        elif join_residuals and _is_sum(node):
            result = _joined(node, space_of)
            if result is None:
                pin_inputs(node, _why(node))
        elif node.op == "call_function" and node.target in _TRANSPARENT_FUNCTIONS:
            result = incoming
            pin_inputs_rest(node, space_of)
        elif node.op == "call_function" and node.target is torch.flatten and _flatten_from_1(node):
            result = _flattened(node, incoming)
        elif node.op == "call_method" and node.target in _TRANSPARENT_METHODS:
            result = incoming
        elif node.op == "call_method" and node.target == "flatten" and _flatten_from_1(node):
            result = _flattened(node, incoming)
        elif node.op in ("call_function", "call_method", "output"):
            pin_inputs(node, _why(node))
        space_of[node] = result
    order = {name: index for index, name in enumerate(weighted)}
    roots = [space for space in spaces if space.merged_into is None]
    for space in roots:
        space.producers.sort(key=lambda name: order.get(name, len(order)))
    return roots, weighted


def _found(
    space_of: dict[torch.fx.Node, tuple[_Space, int] | None], node: object
) -> tuple[_Space, int] | None:
    """The (space, features per channel) a node's tensor carries, through residual joins."""
    found = space_of.get(node) if isinstance(node, torch.fx.Node) else None
    return None if found is None else (found[0].root(), found[1])


def _is_sum(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _SUM_FUNCTIONS) or (
        node.op == "call_method" and node.target in _SUM_METHODS
    )


def _joined(
    node: torch.fx.Node, space_of: dict[torch.fx.Node, tuple[_Space, int] | None]
) -> tuple[_Space, int] | None:
    """The one space a residual add of two elastic tensors carries, or None when it cannot: an
    operand that is not a whole producer's channels (a constant, the model's input, a flattened
    map), a scaled add (`alpha`), or counts that differ (broadcasting)."""
    if len(node.args) != 2 or node.kwargs or len(node.all_input_nodes) != 2:
        return None
    left, right = (_found(space_of, arg) for arg in node.args)
    if left is None or right is None or left[1] != 1 or right[1] != 1:
        return None
    if left[0].channels != right[0].channels or _shape(node.args[0]) != _shape(node.args[1]):
        return None
    if left[0] is not right[0]:
        left[0].absorb(right[0])
    return left[0], 1


def pin_inputs_rest(node: torch.fx.Node, space_of: dict[torch.fx.Node, tuple[_Space, int] | None]) -> None:
    """A transparent function's extra tensor arguments (if any) are pinned."""
    for arg in node.all_input_nodes[1:]:
        found = _found(space_of, arg)
        if found is not None and found[0].pinned is None:
            found[0].pinned = f"{node.target} mixes them with another tensor"


def _why(node: torch.fx.Node) -> str:
    if node.op == "output":
        return "they are the model's outputs"
    if node.target in RESIDUAL_OPS:
        return "a residual add/concat joins them with other channels"
    target = getattr(node.target, "__name__", str(node.target))
    return f"{target} reads them"


def _flatten_from_1(node: torch.fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return bool(start == 1 and end == -1)


def _flattened(node: torch.fx.Node, incoming: tuple[_Space, int] | None) -> tuple[_Space, int] | None:
    if incoming is None:
        return None
    in_shape = _shape(node.args[0])
    if in_shape is None or len(in_shape) < 2 or incoming[1] != 1:
        incoming[0].pinned = incoming[0].pinned or "an unexpected flatten reads them"
        return None
    return incoming[0], math.prod(in_shape[2:])


def analyse_model(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    min_rank_fraction: float | None,
    depth: bool = True,
    alternatives: tuple[str, ...] = (),
    residual_width: bool = False,
) -> SupernetLayout:
    """The elastic layout of `model`; `min_rank_fraction` None disables rank elasticity;
    `alternatives` (some of ALTERNATIVES) are the branches layers may hold; `residual_width`
    makes residual streams elastic (their producers one group), else a residual add pins them."""
    try:
        traced = trace_graph(model, example_input)
    except Exception as error:  # fx cannot trace data-dependent control flow; say so plainly
        raise AdacompError(
            f"cannot build a supernet: torch.fx cannot trace {type(model).__name__} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    spaces, weighted = _width_spaces(traced, model, join_residuals=residual_width)
    modules = dict(model.named_modules())
    groups: list[WidthGroup] = []
    fixed: list[tuple[str, str]] = []
    for space in spaces:
        if space.pinned is None and space.channels < 2:
            space.pinned = "it has a single output channel"
        if space.pinned is None and not space.consumers:
            space.pinned = "nothing reads its channels"
        if space.pinned is not None:
            fixed += [(producer, f"width fixed: {space.pinned}") for producer in space.producers]
            continue
        first, *joined = space.producers
        groups.append(
            WidthGroup(first, space.channels, tuple(space.channelwise), tuple(space.consumers), tuple(joined))
        )
    rank_layers: list[RankLayer] = []
    for name in weighted:
        module = modules[name]
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        out, per_row = int(weight.shape[0]), math.prod(weight.shape[1:])
        max_rank = min(out, per_row)
        if min_rank_fraction is None:
            continue
        smallest = max(1, math.ceil(min_rank_fraction * max_rank))
        if smallest * (per_row + out) < out * per_row:
            rank_layers.append(RankLayer(name, max_rank))
        else:
            fixed.append((name, f"rank fixed: even rank {smallest} would not save parameters"))
    blocks: list[str] = []
    if depth:
        candidates = block_candidates(model, example_input)
        block_traced = trace_graph(model, example_input, leaves=candidates) if candidates else traced
        for block in candidates:
            inside = block + "."
            crossing = [  # a residual stream (joined producers) passes through: skipping is identity
                g.producer
                for g in groups
                if not g.joined
                for member in (g.producer, *g.channelwise, *(c for c, _ in g.consumers))
                if member.startswith(inside) != g.producer.startswith(inside)
            ]
            if crossing:
                fixed.append((block, f"not skippable: the elastic width of {crossing[0]} crosses it"))
            elif not owns_residual(block_traced, block):
                fixed.append((block, "not skippable: its output is added to its input outside it"))
            else:
                blocks.append(block)
    held, no_alternative = _alternatives(traced, model, weighted, alternatives)
    groups = [_named_outside(group, blocks) for group in groups]
    return SupernetLayout(
        tuple(groups), tuple(rank_layers), tuple(blocks), tuple(fixed), held, no_alternative
    )


def _named_outside(group: WidthGroup, blocks: list[str]) -> WidthGroup:
    """`group` named after its first producer outside every skippable block (a plan that skips a
    block leaves out the block's steps, its width with them); unchanged when there is none."""
    producers = group.producers
    outside = [p for p in producers if not any(p.startswith(block + ".") for block in blocks)]
    if not outside or outside[0] == group.producer:
        return group
    rest = tuple(p for p in producers if p != outside[0])
    return replace(group, producer=outside[0], joined=rest)


def _alternatives(
    traced: torch.fx.GraphModule, model: nn.Module, weighted: list[str], wanted: tuple[str, ...]
) -> tuple[tuple[Alternative, ...], tuple[tuple[str, str], ...]]:
    """Which weighted layers can hold which of `wanted`, and why the others hold none."""
    unknown = [t for t in wanted if t not in ALTERNATIVES]
    if unknown:
        raise AdacompError(
            f"supernet alternatives: {unknown[0]!r}; expected some of {', '.join(ALTERNATIVES)}"
        )
    if not wanted:
        return (), ()
    modules = dict(model.named_modules())
    calls = Counter(str(n.target) for n in traced.graph.nodes if n.op == "call_module")
    positions = _flattened_positions(traced, modules)
    held: list[Alternative] = []
    none: list[tuple[str, str]] = []
    for name in dict.fromkeys(weighted):
        module = modules[name]
        reasons: list[str] = []
        chosen: list[str] = []
        for technique in wanted:
            why = _why_no_alternative(technique, module, positions.get(name, 1))
            if calls[name] > 1:
                why = "it is called more than once"
            if why is None:
                chosen.append(technique)
            else:
                reasons.append(f"{technique}: {why}")
        if chosen:
            held.append(
                Alternative(name, tuple(chosen), positions.get(name, 1) if "gap_head" in chosen else 1)
            )
        else:
            none.append((name, "; ".join(reasons)))
    return tuple(held), tuple(none)


def _why_no_alternative(technique: str, module: nn.Module, positions: int) -> str | None:
    if technique == "depthwise_separable":
        if isinstance(module, nn.Linear):
            return "a Linear has no spatial kernel"
        kernel = math.prod(module.kernel_size)  # type: ignore[arg-type]
        if kernel == 1:
            return "a 1x1 conv is already pointwise"
        c_in, c_out = int(module.in_channels), int(module.out_channels)  # type: ignore[arg-type]
        if c_in * kernel + c_in * c_out >= c_in * c_out * kernel:
            return "its separable form would not be smaller"
        return None
    if not isinstance(module, nn.Linear):
        return f"needs a Linear, not {type(module).__name__}"
    if positions < 2:
        return "its input is not a flattened map of several positions"
    return None


def _flattened_positions(traced: torch.fx.GraphModule, modules: dict[str, nn.Module]) -> dict[str, int]:
    """Linear layers that read a flattened (N, C, *spatial) map directly (or through dropout):
    layer -> positions (the product of the spatial sizes)."""
    found: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[str(node.target)], nn.Linear):
            continue
        source = node.args[0] if node.args else None
        while (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules[str(source.target)], nn.Dropout | nn.Identity)
        ):
            source = source.args[0]
        if not isinstance(source, torch.fx.Node) or not _is_flatten(source, modules):
            continue
        shape = _shape(source.args[0])
        if shape is not None and len(shape) >= 3:
            found[str(node.target)] = math.prod(shape[2:])
    return found


def _is_flatten(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        module = modules[str(node.target)]
        return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        return _flatten_from_1(node)
    return node.op == "call_method" and node.target == "flatten" and _flatten_from_1(node)

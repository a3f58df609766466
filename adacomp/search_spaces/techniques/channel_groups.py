"""Where pruning a layer's output channels reaches, and whether it can be pruned safely at all.

`channel_prune` removes channels along Torch-Pruning's dependency graph, which follows them
through BatchNorm, depthwise convs, residual additions, concatenations and a flatten into a
classifier. It cannot follow everything a model's code does with channels:
- a split at sizes written in the code (`chunk`, `split`, a slice) splits elsewhere once the
  channels before it shrink, and the layers after it no longer get the channels they read;
- a reshape that moves channels (ShuffleNet's channel shuffle: view into groups, transpose,
  view back) is mapped as if it did not, or makes building the graph fail outright (a
  ZeroDivisionError in Torch-Pruning's reshape mapping, for the ShuffleNetV2 units in
  tests/helpers/shuffle_models.py);
- a grouped conv (ResNeXt's; depthwise convs are fine) reading the channels keeps its groups
  while losing inputs: 9 of 12 inputs left to 4 groups no longer divide.

So a layer's pruning group is read before the layer is offered channel pruning or pruned. The
graph is the whole model's; where Torch-Pruning cannot build that, it is the graph of the
outermost module holding the layer for which it can (a ShuffleNet unit, whose branch convs then
prune inside the branch), and the pruned channels must not leave that module. A group that
passes a split, a reshape moving channels, a grouped conv or the graph's output is refused, with
the reason
(`adacomp space` prints it). What a safe group shrinks is kept as data (`ChannelGroup`), so a
plan's channel counts can be worked out without the model (search_spaces/repair.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

from adacomp.search_spaces.sites import LayerSite, eval_mode, run_with_hooks

__all__ = ["ChannelDependencies", "ChannelGraph", "ChannelGroup", "Shrink", "channel_graph"]

Side = Literal["in", "out"]
# Node types whose sizes or indices are fixed in the model's code.
_SPLITS = {tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.UNBIND, tp.ops.OPTYPE.SLICE}
SPLIT_REASON = (
    "its channels are split further on (chunk, split or a slice) at sizes fixed in the model's "
    "code, which pruning would shift"
)
SHUFFLE_REASON = (
    "its channels are reshaped further on in a way that moves them (a channel shuffle: a view "
    "into groups and a transpose), which Torch-Pruning cannot follow"
)
OUTPUT_REASON = "its channels reach the model's output"
GROUPED_REASON = (
    "its channels reach a grouped conv ({layer!r}, groups={groups}), whose groups pruning would unbalance"
)


@dataclass(frozen=True)
class Shrink:
    """One layer that pruning a group's channels shrinks: its inputs or its outputs."""

    layer: str
    side: Side
    per_channel: int  # the layer's features per pruned channel: a flatten's H*W, else 1


@dataclass(frozen=True)
class ChannelGroup:
    """What removing output channels of `layer` shrinks (`layer`'s own outputs among them)."""

    layer: str
    channels: int  # the layer's output channels before any pruning: what a ratio is a fraction of
    shrinks: tuple[Shrink, ...]


@dataclass(frozen=True)
class ChannelGraph:
    """The channel structure a search space keeps for repairing plans (search_spaces/repair.py)."""

    groups: tuple[ChannelGroup, ...] = ()  # the layers channel pruning is offered, in execution order
    widths: tuple[tuple[str, int, int], ...] = ()  # (layer, inputs, outputs) of every layer they shrink
    refused: tuple[tuple[str, str], ...] = ()  # (layer, why its channels cannot be pruned safely)


def channel_graph(
    model: nn.Module, example_input: torch.Tensor, sites: Mapping[str, LayerSite], layers: Sequence[str]
) -> ChannelGraph:
    """The groups of `layers` (the ones whose own checks allow channel pruning) and the refusals."""
    dependencies = ChannelDependencies(model, example_input)
    groups: list[ChannelGroup] = []
    refused: list[tuple[str, str]] = []
    for name in sorted(layers, key=lambda n: sites[n].order):
        reason = dependencies.why_not(name)
        if reason is None:
            groups.append(dependencies.describe(name, int(sites[name].output_shape[0])))
        else:
            refused.append((name, reason))
    widths = {shrink.layer for group in groups for shrink in group.shrinks}
    return ChannelGraph(
        tuple(groups),
        tuple((name, *_widths(model.get_submodule(name))) for name in sorted(widths)),
        tuple(refused),
    )


def _widths(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    assert isinstance(layer, nn.modules.conv._ConvNd)
    return layer.in_channels, layer.out_channels


def _sides(layer: nn.Module, inputs: bool) -> tuple[Side, ...]:
    """Which channels of `layer` a dependency removes: a depthwise conv loses inputs and outputs."""
    if isinstance(layer, nn.modules.conv._ConvNd) and layer.groups > 1:
        return ("in", "out")
    return ("in",) if inputs else ("out",)


def is_grouped(module: object) -> bool:
    """A conv in groups of several channels: one Torch-Pruning cannot prune (a depthwise conv,
    one channel per group, it can)."""
    if not isinstance(module, nn.modules.conv._ConvNd) or module.groups == 1:
        return False
    return not module.groups == module.in_channels == module.out_channels


def _absorbs(module: object, handler: Any, graph: tp.DependencyGraph) -> bool:
    """Whether a dependency ends the channels' way: a Linear or ungrouped conv reading them as
    inputs (its outputs stay); anything else passes them on."""
    weighted = isinstance(module, nn.Linear) or (
        isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1
    )
    return weighted and bool(graph.is_in_channel_pruning_fn(handler))


def out_channels_fn(layer: nn.Module) -> Any:
    """Torch-Pruning's function removing `layer`'s output channels."""
    return tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels


class _Reshapes(TorchFunctionMode):
    """Records (input shape, output shape) of every reshape the model's code makes during a
    forward, by the output's grad_fn: the node Torch-Pruning's graph holds for it."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[Any, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        grad_fn = getattr(out, "grad_fn", None)
        if grad_fn is not None and args and isinstance(args[0], torch.Tensor):
            name = grad_fn.name().lower()
            if "view" in name or "reshape" in name:  # Torch-Pruning's own test for a reshape node
                self.shapes.setdefault(grad_fn, (tuple(args[0].shape), tuple(out.shape)))
        return out


def keeps_channels_together(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a reshape (shapes with the batch) leaves each channel's values in one block, as
    Torch-Pruning maps it: unit dimensions added or dropped ((N, C) <-> (N, C, 1, 1)), or the
    channels flattened with what follows them ((N, C, H, W) -> (N, C*H*W) or (N, C, H*W))."""
    if [d for d in before if d != 1] == [d for d in after if d != 1]:
        return True
    if len(before) < 2 or len(after) < 2 or before[0] != after[0]:
        return False
    return any(after[1] == math.prod(before[1:k]) for k in range(2, len(before) + 1))


@dataclass
class _ScopeGraph:
    """Torch-Pruning's graph of one module (`scope`; "" is the whole model)."""

    scope: str
    graph: tp.DependencyGraph
    reshapes: dict[Any, tuple[tuple[int, ...], tuple[int, ...]]]
    names: dict[int, str]  # id(module) -> its name in the whole model


class ChannelDependencies:
    """The dependency graphs channel pruning works on, built on first use and kept (pruning along
    them keeps them current, as Torch-Pruning intends). Not a value: it holds `model`."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        self.model = model
        self.example = example_input[:1]
        self._built: dict[str, _ScopeGraph | str] = {}  # scope -> its graph, or why it cannot be built
        self._inputs: dict[str, torch.Tensor] | None = None

    def why_not(self, layer: str) -> str | None:
        """None when pruning `layer`'s output channels stays within what Torch-Pruning follows."""
        found = self._scope_graph(layer)
        if isinstance(found, str):
            return found
        try:
            group = self.group(layer, list(range(_widths(self.model.get_submodule(layer))[1])))
        except ValueError as error:  # the layer is not in the graph Torch-Pruning traced
            return f"Torch-Pruning's graph does not hold it ({error})"
        return self._unsafe(found, group)

    def group(self, layer: str, idxs: list[int]) -> Any:
        """Torch-Pruning's group removing channels `idxs` of `layer` (call `why_not` first)."""
        found = self._scope_graph(layer)
        assert not isinstance(found, str), found
        module = self.model.get_submodule(layer)
        return found.graph.get_pruning_group(module, out_channels_fn(module), idxs=idxs)

    def check(self, layer: str, group: Any) -> bool:
        """Torch-Pruning's own check that `group` leaves every layer it touches a channel."""
        found = self._scope_graph(layer)
        assert not isinstance(found, str), found
        return bool(found.graph.check_pruning_group(group))

    def describe(self, layer: str, channels: int) -> ChannelGroup:
        """What pruning `layer` shrinks, as data (call `why_not` first)."""
        found = self._scope_graph(layer)
        assert not isinstance(found, str), found
        width = _widths(self.model.get_submodule(layer))[1]
        shrinks: dict[tuple[str, Side], int] = {}
        for dep, idxs in self.group(layer, list(range(width))):
            target = dep.target.module
            name = found.names.get(id(target))
            if name is None or not isinstance(target, nn.Linear | nn.modules.conv._ConvNd):
                continue  # BatchNorm, an op: nothing a technique's floor is about
            for side in _sides(target, found.graph.is_in_channel_pruning_fn(dep.handler)):
                shrinks[(name, side)] = max(1, len(idxs) // width)
        return ChannelGroup(
            layer, channels, tuple(Shrink(name, side, n) for (name, side), n in shrinks.items())
        )

    def _unsafe(self, found: _ScopeGraph, group: Any) -> str | None:
        """Why `group` cannot be pruned safely, or None."""
        leaves = False
        for dep, _ in group:
            node = dep.target
            if node.type in _SPLITS:
                return SPLIT_REASON
            shapes = found.reshapes.get(node.grad_fn)
            # A reshape not recorded is inside one torch op (F.linear views an unbatched vector
            # as a batch of one): only the model's own reshapes can move channels.
            if node.type == tp.ops.OPTYPE.RESHAPE and shapes and not keeps_channels_together(*shapes):
                return SHUFFLE_REASON
            if is_grouped(node.module):
                return GROUPED_REASON.format(
                    layer=found.names.get(id(node.module)), groups=node.module.groups
                )
            leaves = leaves or (not node.outputs and not _absorbs(node.module, dep.handler, found.graph))
        if not leaves:
            return None
        if not found.scope:
            return OUTPUT_REASON
        whole = self._built[""]
        return (
            f"Torch-Pruning cannot build the whole model's channel graph ({whole}), and pruned, its "
            f"channels would leave {found.scope!r}, the outermost module holding it whose graph it can"
        )

    def _scope_graph(self, layer: str) -> _ScopeGraph | str:
        """The graph `layer` is pruned in: the whole model's, or where Torch-Pruning cannot build
        that, the outermost module's holding `layer` (called once, with one tensor) it can build."""
        whole = self._build("")
        if isinstance(whole, _ScopeGraph):
            return whole
        parts = layer.split(".")
        for scope in (".".join(parts[:k]) for k in range(1, len(parts))):
            found = self._build(scope)
            if isinstance(found, _ScopeGraph):
                return found
        return (
            f"Torch-Pruning cannot build the channel graph of the model or of a module holding it ({whole})"
        )

    def _build(self, scope: str) -> _ScopeGraph | str:
        if scope not in self._built:
            self._built[scope] = self._built_graph(scope)
        return self._built[scope]

    def _built_graph(self, scope: str) -> _ScopeGraph | str:
        module = self.model.get_submodule(scope) if scope else self.model
        inputs = self.example if not scope else self._scope_inputs().get(scope)
        if inputs is None:
            return "it is not called once with one tensor"
        reshapes = _Reshapes()
        try:
            with torch.enable_grad(), eval_mode(module), reshapes:  # Torch-Pruning traces autograd
                graph = tp.DependencyGraph().build_dependency(module, example_inputs=inputs)
        except Exception as error:  # Torch-Pruning fails on what it cannot map in many ways: say which
            first = str(error).splitlines()[0] if str(error) else ""
            return f"{type(error).__name__}: {first}" if first else type(error).__name__
        prefix = f"{scope}." if scope else ""
        names = {id(sub): prefix + name for name, sub in module.named_modules() if name}
        return _ScopeGraph(scope, graph, reshapes.shapes, names)

    def _scope_inputs(self) -> dict[str, torch.Tensor]:
        """The input of every module called once with one tensor, from one forward pass."""
        if self._inputs is None:
            seen: dict[str, list[Any]] = {}

            def record(name: str) -> Any:
                def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                    seen.setdefault(name, []).append(inputs)

                return hook

            modules = [(m, record(n)) for n, m in self.model.named_modules() if n and any(m.children())]
            run_with_hooks(self.model, self.example, modules)
            self._inputs = {
                name: calls[0][0]
                for name, calls in seen.items()
                if len(calls) == 1 and len(calls[0]) == 1 and isinstance(calls[0][0], torch.Tensor)
            }
        return self._inputs

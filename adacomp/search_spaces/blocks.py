"""Blocks a model can skip: depth as a compression step (`skip_block`).

A block is skippable when running it as the identity leaves a model that still computes: a
non-leaf module holding weighted layers, called once, with one tensor in and the same shape
out, and owning its residual (its output is not added to its own input outside it, where
skipping it would double the input instead of passing it through). MobileNetV2's inverted
residuals with a shortcut and ResNet's basic blocks without downsampling are such blocks; so
is a shape-keeping conv-BN-ReLU with no residual at all, whose skip drops the layer outright
(the search judges whether that pays). Only the outermost ones count: a block inside a
skippable block goes with it.

The shape check runs the model once with hooks; the residual check reads its torch.fx graph,
so a model fx cannot trace has no skippable blocks (said in one line where it is asked for).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from adacomp.errors import AdacompError
from adacomp.search_spaces.sites import LayerSite, eval_mode, run_with_hooks, weight_modules

__all__ = ["block_candidates", "block_sites", "inside", "owns_residual", "trace_graph"]

# Graph ops that join a tensor with another one: a residual add, a subtraction, a concat.
RESIDUAL_OPS: set[Any] = {operator.add, operator.iadd, torch.add, operator.sub, torch.cat}


def trace_graph(
    model: nn.Module, example_input: torch.Tensor, leaves: Iterable[str] = ()
) -> torch.fx.GraphModule:
    """`model`'s fx graph with tensor shapes on its nodes; `leaves` are kept as one call each."""
    leaf_names = set(leaves)

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
            return qualified_name in leaf_names or super().is_leaf_module(m, qualified_name)

    graph = Tracer().trace(model)
    module = torch.fx.GraphModule(model, graph)
    with torch.no_grad(), eval_mode(module):
        ShapeProp(module).propagate(example_input[:1])
    return module


def _shape_preserving_calls(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Outermost non-leaf modules holding weighted layers, called once with one tensor and
    returning its shape (execution order), with that shape (one sample)."""
    seen: Counter[str] = Counter()  # insertion order = execution order
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            seen[name] += 1
            if (
                len(inputs) == 1
                and isinstance(inputs[0], torch.Tensor)
                and isinstance(output, torch.Tensor)
                and inputs[0].shape == output.shape
            ):
                shapes[name] = tuple(output.shape[1:])

        return record

    blocks = [
        (name, module)
        for name, module in model.named_modules()
        if name and any(module.children()) and any(True for _ in weight_modules(module))
    ]
    run_with_hooks(model, example_input, [(module, hook(name)) for name, module in blocks])
    found = [n for n in seen if n in shapes and seen[n] == 1]
    outermost = [n for n in found if not any(inside(n, outer) for outer in found if outer != n)]
    return outermost, {n: shapes[n] for n in outermost}


def block_candidates(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Outermost non-leaf modules called once with one tensor, returning the same shape."""
    return _shape_preserving_calls(model, example_input)[0]


def owns_residual(traced: torch.fx.GraphModule, block: str) -> bool:
    """False when the block's output is joined with its own input outside it (skipping it then
    doubles the input rather than passing it through)."""
    for node in traced.graph.nodes:
        if node.op == "call_module" and node.target == block:
            source = node.args[0]
            for user in node.users:
                if user.target in RESIDUAL_OPS and source in user.all_input_nodes:
                    return False
    return True


def inside(layer: str, block: str) -> bool:
    """Whether `layer` is a module inside `block` (by name)."""
    return layer.startswith(block + ".")


def block_sites(
    model: nn.Module, example_input: torch.Tensor, leaf_sites: Mapping[str, LayerSite]
) -> dict[str, LayerSite]:
    """A site for every skippable block of `model` (execution order): its shape, its place (its
    first leaf's order) and its MACs (its leaves'). `leaf_sites` are the model's `trace_sites`."""
    candidates, shapes = _shape_preserving_calls(model, example_input)
    if not candidates:
        return {}
    try:
        traced = trace_graph(model, example_input, leaves=candidates)
    except Exception as error:  # fx cannot trace data-dependent control flow: no depth step
        raise AdacompError(
            f"cannot find skippable blocks: torch.fx cannot trace {type(model).__name__} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    sites: dict[str, LayerSite] = {}
    for block in candidates:
        leaves = [s for name, s in leaf_sites.items() if inside(name, block)]
        if not leaves or not owns_residual(traced, block):
            continue
        sites[block] = LayerSite(
            name=block,
            module_type=type(model.get_submodule(block)).__name__,
            input_shape=shapes[block],
            output_shape=shapes[block],
            order=min(s.order for s in leaves),
            is_output=False,
            flattened_from=None,
            macs=sum(s.macs for s in leaves),
        )
    return sites

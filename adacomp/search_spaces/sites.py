"""Where each layer sits in a model: the shapes around it, its order, its cost.

Techniques need more than the module itself to decide whether they apply and how (global average
pooling must know the feature map a classifier flattens; channel pruning must not touch the
output layer), so one forward pass with hooks records a `LayerSite` for every leaf module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# Modules that keep a flattened vector flat and do not change its meaning: looking back from a
# Linear for the feature map it flattens may pass through them.
_SHAPE_PRESERVING = (nn.Dropout, nn.Identity, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish)


@dataclass(frozen=True)
class LayerSite:
    name: str
    module_type: str
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    output_shape: tuple[int, ...]
    order: int  # position in execution order among leaf modules
    is_output: bool  # the last weighted layer: its outputs are the model's outputs
    # For a Linear that reads a flattened feature map: that map's shape, e.g. (C, H, W) or (C, L).
    flattened_from: tuple[int, ...] | None
    macs: int  # multiply-accumulates of this layer for one sample (dense)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.module_type,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "macs": self.macs,
            "is_output": self.is_output,
            "flattened_from": list(self.flattened_from) if self.flattened_from else None,
        }


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run in eval mode (BatchNorm with batch 1 must not use batch statistics), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def leaf_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Dense MACs of one sample through a conv or linear layer (others count as zero)."""
    per_sample_out = out[0].numel() if out.dim() > 0 else 1
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = math.prod(module.kernel_size)
        return per_sample_out * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return per_sample_out * module.in_features
    return 0


def _has_weight(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dim() >= 2


def trace_sites(model: nn.Module, example_input: torch.Tensor) -> dict[str, LayerSite]:
    """One forward pass in eval mode; returns a site for every leaf module that ran."""
    records: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...], int]] = []

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not inputs or not isinstance(inputs[0], torch.Tensor):
                return
            if not isinstance(output, torch.Tensor):
                return
            in_shape = tuple(inputs[0].shape[1:])
            out_shape = tuple(output.shape[1:])
            records.append((name, module, in_shape, out_shape, leaf_macs(module, output)))

        return hook

    leaves = [(name, module) for name, module in model.named_modules() if name and not any(module.children())]
    run_with_hooks(model, example_input, [(module, make_hook(name)) for name, module in leaves])

    weighted = [i for i, (_, module, *_rest) in enumerate(records) if _has_weight(module)]
    last_weighted = weighted[-1] if weighted else -1
    sites: dict[str, LayerSite] = {}
    for i, (name, module, in_shape, out_shape, macs) in enumerate(records):
        if name in sites:  # a module called twice keeps its first site
            continue
        flattened = _flattened_from(records, i) if isinstance(module, nn.Linear) else None
        sites[name] = LayerSite(
            name=name,
            module_type=type(module).__name__,
            input_shape=in_shape,
            output_shape=out_shape,
            order=i,
            is_output=i == last_weighted,
            flattened_from=flattened,
            macs=macs,
        )
    return sites


def run_with_hooks(model: nn.Module, example_input: torch.Tensor, hooks: list[tuple[nn.Module, Any]]) -> None:
    """One forward pass of one sample in eval mode with each (module, forward hook) attached,
    every hook removed afterwards whatever happens."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()


def _flattened_from(
    records: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...], int]], index: int
) -> tuple[int, ...] | None:
    """The feature map a Linear flattens, found by walking back through the executed leaves."""
    in_shape = records[index][2]
    if len(in_shape) != 1:
        return None
    features = in_shape[0]
    for _, module, prev_in, prev_out, _ in reversed(records[:index]):
        if math.prod(prev_out) != features:
            return None
        if isinstance(module, nn.Flatten):
            return prev_in if len(prev_in) >= 2 else None
        if len(prev_out) >= 2:
            return prev_out  # flattened functionally (torch.flatten / view)
        if not isinstance(module, _SHAPE_PRESERVING):
            return None
    return None


def weight_modules(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Conv and Linear modules inside `module` (itself included): the ones with real weights."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear | nn.modules.conv._ConvNd):
            yield name, sub


def set_submodule(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement)

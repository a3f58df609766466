"""Unstructured magnitude pruning: zero the smallest weights of every conv/linear in the layer.

The mask is a `torch.nn.utils.parametrize` parametrization (weight = weight * mask), so the zeros
stay zeros through fine-tuning and the module still deep-copies (the hook-based
`torch.nn.utils.prune` leaves a non-leaf tensor that cannot be copied after a forward). Dense
kernels do not get faster from zeros, so this changes storage (sparse encoding), not latency:
the cost models know that.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from adacomp.search_spaces.params import FloatParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite, weight_modules
from adacomp.search_spaces.techniques._base import Encoding, Technique, has_weights

SPARSITY = FloatParam(0.0, 0.95, default=0.5)


class WeightMask(nn.Module):
    """Parametrization that keeps pruned weights at zero."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor = self.mask  # type: ignore[assignment]
        return weight * mask


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """1 for the weights kept, 0 for the `sparsity` fraction with the smallest magnitude."""
    pruned = round(sparsity * weight.numel())
    mask = torch.ones_like(weight)
    if pruned > 0:
        smallest = torch.topk(weight.detach().abs().flatten(), pruned, largest=False).indices
        mask.view(-1)[smallest] = 0.0
    return mask


def _is_masked(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    parametrizations: Any = module.parametrizations
    return any(isinstance(p, WeightMask) for p in parametrizations["weight"])


def is_magnitude_pruned(layer: nn.Module) -> bool:
    return any(_is_masked(sub) for _, sub in weight_modules(layer))


class MagnitudePrune(Technique):
    name = "magnitude_prune"
    summary = "zero the smallest-magnitude weights (sparse storage; dense kernels unchanged)"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not has_weights(layer):
            return f"{type(layer).__name__} has no conv or linear weights"
        if is_magnitude_pruned(layer):
            return "the layer is already magnitude-pruned"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"sparsity": SPARSITY}

    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        sparsity = float(params["sparsity"])
        pruned = copy.deepcopy(layer)
        for _, sub in list(weight_modules(pruned)):
            mask = magnitude_mask(_weight(sub), sparsity)
            parametrize.register_parametrization(sub, "weight", WeightMask(mask))
        return pruned

    def encode(self, encoding: Encoding, **params: ParamValue) -> Encoding:
        return encoding.with_(sparse=True)


def bake_pruning(model: nn.Module) -> nn.Module:
    """Make pruning masks permanent (plain weights with zeros), in place, for export and storage."""
    for _, sub in list(weight_modules(model)):
        if _is_masked(sub):
            _unparametrize(sub)
    return model


def _unparametrize(module: nn.Module) -> None:
    """Replace the parametrized weight by a plain parameter holding its masked value.

    `parametrize.remove_parametrizations` deletes the property from the module's class, and
    deep copies share that class: removing it on one copy would break every other copy.
    So the module alone is switched back to its original class.
    """
    weight = _weight(module).clone()
    del module._modules["parametrizations"]
    module.__class__ = type(module).__bases__[0]
    module.weight = nn.Parameter(weight)


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()

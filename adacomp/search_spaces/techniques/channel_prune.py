"""Structured channel pruning: remove whole output channels and shrink everything that reads them.

Dependencies (BatchNorm, the next conv or linear, residual additions, depthwise convs, a flatten
into a classifier) are followed by Torch-Pruning's dependency graph, so the pruned model is
physically smaller and still runs; a layer whose channels reach what that graph cannot follow
(a split, a channel shuffle, a grouped conv) is refused (channel_groups.py). Channels with the
smallest group L1 norm go first.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.params import FloatParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite, eval_mode
from adacomp.search_spaces.techniques._base import StructuralTechnique, is_plain_conv
from adacomp.search_spaces.techniques.channel_groups import ChannelDependencies, out_channels_fn

RATIO = FloatParam(0.0, 0.9, default=0.25)
# Kept channel counts are rounded to multiples of this where the layer's own count is one.
# onnxruntime's CPU provider runs a conv in its blocked NCHWc layout (worth 1.7-4x on the
# MobileNetV2 and ResNet tasks here, benchmarks/latency_choices.py) only when its input and
# output channel counts are multiples of the MLAS block: 8 with AVX2, 16 with AVX-512
# (onnxruntime/core/optimizer/nchwc_transformer.cc). A conv pruned to 13 channels falls back to
# the plain NCHW kernels and can end up slower than the unpruned one. Phones' NEON kernels
# also work in groups of 4 or 8 channels.
CHANNEL_MULTIPLE = 8


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    channels: int = layer.out_channels  # type: ignore[assignment]
    return channels


def kept_channels(original: int, ratio: float, multiple: int | None = None) -> int:
    """How many output channels survive pruning `ratio` of `original` (at least one).

    In a layer of at least two blocks whose count is a multiple of `multiple`, a count of one
    block or more is rounded to the nearest multiple. That holds for 16-channel layers too,
    whose choices are then "keep" or "halve": in a CNN they run at the highest resolution, where
    the blocked layout matters most (ResNet-8's 16-channel stage pruned to 10 channels runs
    slower than unpruned here). A count below one block is kept exact: the layer is then tiny,
    and the conv reading it still runs blocked (onnxruntime reads fewer input channels than a
    block directly), so rounding up would only undo the pruning that was asked for.
    """
    return aligned_channels(original, max(1, round(original * (1.0 - ratio))), multiple)


def aligned_channels(original: int, keep: int, multiple: int | None = None) -> int:
    """`keep` of a layer's `original` channels, rounded to the kernels' block by `kept_channels`'s rule.

    Shared with the supernet's elastic widths, whose subnets run on the same kernels.
    """
    multiple = CHANNEL_MULTIPLE if multiple is None else multiple  # read per call: benchmarks vary it
    if multiple > 1 and original % multiple == 0 and original >= 2 * multiple and keep >= multiple:
        keep = multiple * max(1, round(keep / multiple))
    return keep


class ChannelPrune(StructuralTechnique):
    name = "channel_prune"
    summary = "remove whole output channels/neurons and shrink the layers that depend on them"
    fewest_channels = (1, 2)  # one output channel kept, at least one removed

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not (isinstance(layer, nn.Linear) or is_plain_conv(layer)):
            return f"applies to Conv and Linear layers, not {type(layer).__name__}"
        if is_plain_conv(layer) and layer.groups != 1:
            return "grouped/depthwise convs are pruned with the layer that feeds them"
        if site.is_output:
            return "it is the model's output layer (its channels are the model's outputs)"
        if _out_channels(layer) < self.fewest_channels[1]:
            return "it has a single output channel"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"ratio": RATIO}

    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        """Prune a lone layer's outputs (its consumers are not touched: see `apply_to_model`)."""
        keep = kept_channels(_out_channels(layer), float(params["ratio"]))
        pruned = copy.deepcopy(layer)
        weight: torch.Tensor = pruned.weight  # type: ignore[assignment]
        scores = weight.detach().abs().flatten(1).sum(1)
        removed = torch.argsort(scores)[: _out_channels(layer) - keep].tolist()
        if removed:
            out_channels_fn(layer)(pruned, removed)
        return pruned

    def apply_to_model(
        self,
        model: nn.Module,
        targets: Mapping[str, Mapping[str, ParamValue]],
        sites: Mapping[str, LayerSite],
        example_input: torch.Tensor,
    ) -> None:
        """Prune every target along its dependency group (channel_groups.py), refusing first, in
        one line, a target whose channels Torch-Pruning cannot follow (a split, a shuffle, groups)."""
        with eval_mode(model):
            dependencies = ChannelDependencies(model, example_input)
            order = sorted(targets, key=lambda n: sites[n].order)
            for name in order:
                reason = dependencies.why_not(name)
                if reason is not None:
                    raise AdacompError(f"layer {name!r}: {self.name!r} does not apply ({reason})")
            importance = tp.importance.GroupMagnitudeImportance(p=1)
            for name in order:
                layer = model.get_submodule(name)
                original = int(sites[name].output_shape[0])
                keep = kept_channels(original, float(targets[name]["ratio"]))
                current = _out_channels(layer)
                if current <= keep:  # already shrunk through a coupled layer (residual join)
                    continue
                scores: Any = importance(dependencies.group(name, list(range(current))))
                removed = torch.argsort(scores)[: current - keep].tolist()
                group = dependencies.group(name, removed)
                if not dependencies.check(name, group):
                    raise AdacompError(
                        f"layer {name!r}: removing {len(removed)} channels would empty a dependent layer; "
                        "use a smaller ratio"
                    )
                group.prune()

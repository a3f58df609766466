"""The protocol every compression technique follows.

A technique is a small stateless object: a name, a stage, `why_not` (does it apply here, and if
not, why), `space` (its hyper-parameters for this layer, as plain data), `apply` (the
replacement layer; never mutates its input) and `encode` (how it changes the way the layer's
weights are stored). The contract is enforced by tests/search_spaces/test_technique_contract.py,
which every registered technique runs.

Stages order the steps of one layer, because some techniques cannot be expressed per layer:
- STRUCTURE runs first, on the whole model (channel pruning reshapes the layers that consume
  the pruned channels);
- MODULE replaces one layer by another (low rank, depthwise-separable, fire, ...);
- EXPORT leaves the torch layer alone and acts on the exported ONNX graph (quantization), so
  what is evaluated and measured is exactly what ships.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import ClassVar, Literal

import torch
from torch import nn

from adacomp.search_spaces.params import ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite

# What a technique's plan step names: a leaf layer (a conv, a linear) or a skippable block
# (search_spaces/blocks.py), whose site is the block's.
Unit = Literal["layer", "block"]


class Stage(StrEnum):
    STRUCTURE = "structure"
    MODULE = "module"
    EXPORT = "export"


@dataclass(frozen=True)
class Encoding:
    """How a layer's weights are stored on the device (see `facts.encoded_bytes`)."""

    value_bits: int = 32
    sparse: bool = False
    # int8 stores a float32 scale and an int8 zero point per output channel.
    per_channel_scale: bool = False

    def with_(self, **changes: object) -> Encoding:
        return replace(self, **changes)  # type: ignore[arg-type]


DENSE_FP32 = Encoding()


class Technique(ABC):
    """One compression technique. Subclass, set `name`/`stage`/`summary`, register an instance."""

    name: ClassVar[str]
    stage: ClassVar[Stage] = Stage.MODULE
    unit: ClassVar[Unit] = "layer"
    summary: ClassVar[str] = ""
    # The fewest (input, output) channels of a layer it applies to, where `why_not` asks for
    # more than one: channel pruning elsewhere in a plan can take a layer below them, and plan
    # repair (search_spaces/repair.py) reads them to leave such a step out.
    fewest_channels: ClassVar[tuple[int, int]] = (1, 1)

    @abstractmethod
    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        """None when the technique applies to `layer` at `site`; otherwise the reason it does not."""

    def applies_to(self, layer: nn.Module, site: LayerSite) -> bool:
        return self.why_not(layer, site) is None

    @abstractmethod
    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        """The hyper-parameters for this layer; values are checked against these specs."""

    @abstractmethod
    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        """The replacement for `layer`. Must not mutate `layer`; output shapes must not change."""

    def encode(self, encoding: Encoding, **params: ParamValue) -> Encoding:
        """How the stored encoding of this layer's weights changes (default: unchanged)."""
        return encoding

    def check_targets(self, targets: Mapping[str, Mapping[str, ParamValue]]) -> None:
        """Cross-layer checks over every layer this technique is planned for (default: none)."""

    def __repr__(self) -> str:
        return f"<technique {self.name} ({self.stage})>"


class StructuralTechnique(Technique):
    """A technique whose effect crosses layer boundaries, applied to the whole model at once."""

    stage: ClassVar[Stage] = Stage.STRUCTURE

    @abstractmethod
    def apply_to_model(
        self,
        model: nn.Module,
        targets: Mapping[str, Mapping[str, ParamValue]],
        sites: Mapping[str, LayerSite],
        example_input: torch.Tensor,
    ) -> None:
        """Apply to every target layer of `model` in place (`compress` passes a private copy)."""


class ExportTechnique(Technique):
    """A technique that acts on the exported graph; in torch it is the identity."""

    stage: ClassVar[Stage] = Stage.EXPORT

    def apply(self, layer: nn.Module, site: LayerSite, **params: ParamValue) -> nn.Module:
        return copy.deepcopy(layer)


def has_weights(layer: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear | nn.modules.conv._ConvNd) for m in layer.modules())


def is_plain_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(
        layer, nn.modules.conv._ConvTransposeNd
    )


def describe_layer(layer: nn.Module) -> str:
    return type(layer).__name__

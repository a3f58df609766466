"""Model facts for any model and plan: parameters, MACs, and encoded storage bytes.

Storage is what a device stores, not a parameter count: fp32/fp16/int8 values, sparse weights
with their index overhead (the cheaper of a bitmask and a coordinate list), factorised weights
as the factors they are. BatchNorm counts as folded into the conv before it (one bias per
channel), as the ONNX export does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adacomp.search_spaces.plan import CompressionPlan
from adacomp.search_spaces.sites import eval_mode
from adacomp.search_spaces.techniques import get_technique
from adacomp.search_spaces.techniques._base import DENSE_FP32, Encoding
from adacomp.search_spaces.techniques.magnitude_prune import bake_pruning

SCALE_BYTES = 4 + 1  # int8 per-channel scale (float32) + zero point (int8)


@dataclass(frozen=True)
class ModelFacts:
    parameters: int
    nonzero_parameters: int
    macs: int  # per sample, dense kernels
    storage_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encoded_weight_bytes(numel: int, nonzero: int, encoding: Encoding) -> int:
    """Bytes to store one weight tensor; sparse storage is used only where it is cheaper."""
    values = math.ceil(nonzero * encoding.value_bits / 8)
    dense = math.ceil(numel * encoding.value_bits / 8)
    if not encoding.sparse:
        return dense
    bitmask = math.ceil(numel / 8) + values
    index_bytes = 2 if numel <= 1 << 16 else 4
    coordinates = nonzero * index_bytes + values
    return min(dense, bitmask, coordinates)


def bias_bytes(numel: int, encoding: Encoding) -> int:
    # int8 graphs keep biases as int32 (QDQ); fp16 halves them.
    return numel * (2 if encoding.value_bits == 16 else 4)


def layer_encodings(plan: CompressionPlan | None) -> dict[str, Encoding]:
    if plan is None:
        return {}
    encodings: dict[str, Encoding] = {}
    for layer, steps in plan:
        encoding = DENSE_FP32
        for step in steps:
            encoding = get_technique(step.technique).encode(encoding, **step.kwargs)
        encodings[layer] = encoding
    return encodings


def _encoding_of(module_name: str, encodings: dict[str, Encoding]) -> Encoding:
    owner = None
    for layer in encodings:
        if (module_name == layer or module_name.startswith(layer + ".")) and (
            owner is None or len(layer) > len(owner)
        ):
            owner = layer
    return encodings[owner] if owner is not None else DENSE_FP32


def storage_bytes(model: nn.Module, plan: CompressionPlan | None = None) -> int:
    """Encoded bytes of every stored tensor of `model` (masks baked; BatchNorm folded)."""
    return _storage_bytes_of_baked(bake_pruning(copy.deepcopy(model)), plan)


def _storage_bytes_of_baked(baked: nn.Module, plan: CompressionPlan | None) -> int:
    encodings = layer_encodings(plan)
    total = 0
    for name, module in baked.named_modules():
        encoding = _encoding_of(name, encodings)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            total += bias_bytes(module.num_features, encoding)
            continue
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            if pname == "weight" and tensor.dim() >= 2:
                nonzero = int(torch.count_nonzero(tensor))
                total += encoded_weight_bytes(tensor.numel(), nonzero, encoding)
                if encoding.per_channel_scale:
                    total += tensor.shape[0] * SCALE_BYTES
                elif encoding.value_bits == 8:
                    total += SCALE_BYTES
            elif pname == "bias":
                total += bias_bytes(tensor.numel(), encoding)
            elif tensor.is_floating_point():
                total += math.ceil(tensor.numel() * min(encoding.value_bits, 32) / 8)
    return total


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates for one sample, from torch's own FLOP counter (FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad(), eval_mode(model):
        model(example_input[:1])
    return int(counter.get_total_flops()) // 2


def model_facts(
    model: nn.Module, example_input: torch.Tensor, plan: CompressionPlan | None = None
) -> ModelFacts:
    baked = bake_pruning(copy.deepcopy(model))
    parameters = sum(p.numel() for p in baked.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in baked.parameters())
    return ModelFacts(
        parameters=parameters,
        nonzero_parameters=nonzero,
        macs=count_macs(baked, example_input),
        storage_bytes=_storage_bytes_of_baked(baked, plan),
    )

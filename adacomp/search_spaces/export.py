"""Export a (compressed) torch model to the ONNX bytes that ship, quantized as planned.

Uses torch's dynamo-based exporter (the TorchScript one is deprecated) with a dynamic batch
dimension; initializer names keep the torch parameter names, which is how quantization finds
the nodes of each planned layer. Pruning masks are baked in first, on a copy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import torch
from torch import nn

from adacomp.search_spaces.plan import CompressionPlan
from adacomp.search_spaces.techniques.magnitude_prune import bake_pruning
from adacomp.search_spaces.techniques.quantize import quantize_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_precisions(plan: CompressionPlan | None) -> dict[str, str]:
    """Layer -> precision for every layer the plan quantizes."""
    if plan is None:
        return {}
    precisions: dict[str, str] = {}
    for layer, steps in plan:
        for step in steps:
            if step.technique == "quantize":
                precisions[layer] = str(step.kwargs["precision"])
    return precisions


def to_onnx_proto(model: nn.Module, example_input: torch.Tensor) -> onnx.ModelProto:
    """Float32 ONNX graph of `model` (eval mode, masks baked, dynamic batch)."""
    baked = bake_pruning(copy.deepcopy(model)).eval()
    # A batch of one would be specialised by torch.export; two keeps the batch dimension dynamic.
    sample = example_input[:1]
    example = torch.cat([sample, sample]).contiguous()
    batch = torch.export.Dim("batch")
    with _quiet():
        program = torch.onnx.export(
            baked,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            optimize=True,
            verbose=False,
        )
    assert program is not None
    return program.model_proto


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    plan: CompressionPlan | None = None,
    calibration: Sequence[np.ndarray] | None = None,
) -> bytes:
    """ONNX bytes that pass `onnx.checker`; int8/fp16 applied to the layers the plan quantizes."""
    proto = to_onnx_proto(model, example_input)
    proto = quantize_onnx(proto, export_precisions(plan), calibration)
    onnx.checker.check_model(proto)
    serialized: bytes = proto.SerializeToString()
    return serialized


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and warns about optional torchvision ops; keep output clean."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)

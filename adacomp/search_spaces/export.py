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
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from adacomp.search_spaces import export_memo
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
    """Float32 ONNX graph of `model` (eval mode, masks baked, dynamic batch). An export of the
    same model, weights and code is read back from the memo (export_memo.py) once it agrees."""
    baked = bake_pruning(copy.deepcopy(model)).eval()
    # A batch of one would be specialised by torch.export; two keeps the batch dimension dynamic.
    sample = example_input[:1]
    example = torch.cat([sample, sample]).contiguous()
    key = export_memo.fingerprint(baked, example) if export_memo.memo_limit_bytes() else None
    if key is not None:
        remembered = export_memo.recall(key)
        if remembered is not None and export_memo.agrees(remembered, baked, example):
            return remembered
    proto = _exported(baked, example)
    if key is not None:
        export_memo.remember(key, proto)
    return proto


def _exported(baked: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    batch = torch.export.Dim("batch")
    with _quiet(), _torchlib_registry_built_once():
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
    return _without_node_metadata(program.model_proto)


def _without_node_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without the exporter's per-node notes (the torch module path, class and source
    stack of every node): nothing reads them at run time, and on a small compressed model they
    were half the file a phone downloads (ResNet-8, every 3x3 conv separable, int8: 36 KiB of
    93 KiB). The weights' names, which quantization goes by, are initializer names, kept."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return proto


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


_TORCHLIB_REGISTRIES: dict[Any, Any] = {}  # opset -> torch.onnx's aten -> ONNX table


@contextlib.contextmanager
def _torchlib_registry_built_once() -> Iterator[None]:
    """torch.onnx rebuilds its aten -> ONNX table from onnxscript's torchlib on every export,
    parsing the source of 1,500 functions: 0.8 s here, half the export of a small CNN, the same
    table every time. During our exports, each opset's table is built once per process and
    every export gets its own copy (an export may register custom ops in it). Where a torch
    release moves this private hook, exports simply build the table themselves again."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # pragma: no cover - a torch without the dynamo exporter
        yield
        return
    registry_type: Any = getattr(_registration, "ONNXRegistry", object)
    original = vars(registry_type).get("from_torchlib")
    if not isinstance(original, classmethod) or not hasattr(registry_type(), "functions"):
        yield  # pragma: no cover - the hook moved in this torch release
        return
    build = original.__get__(None, registry_type)

    default_opset = getattr(original.__func__, "__defaults__", None) or (None,)

    def copy_of_cached(opset_version: Any = default_opset[0]) -> Any:
        if opset_version not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[opset_version] = (
                build() if opset_version is None else build(opset_version=opset_version)
            )
        cached = _TORCHLIB_REGISTRIES[opset_version]
        fresh = copy.copy(cached)
        fresh.functions = {op: list(metas) for op, metas in cached.functions.items()}
        return fresh

    registry_type.from_torchlib = staticmethod(copy_of_cached)
    try:
        yield
    finally:
        registry_type.from_torchlib = original


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

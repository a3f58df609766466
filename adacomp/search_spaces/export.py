"""Export a (compressed) torch model to the ONNX bytes that ship, quantized as planned.

Pruning masks are baked in first, on a copy. Every graph has a dynamic batch dimension and its
weighted nodes read initializers named after the torch parameters (`features.0.weight`), which is
how quantization finds the nodes of each planned layer.

Two exporters, fastest first. torch's TorchScript exporter traces the model: 0.2-0.45 s for
MobileNetV2 on a 2-core AMD EPYC, against 3.2-5.8 s for the dynamo exporter (torch.export's
tracing and decompositions; 13 s on a loaded machine), which was 90 % of a supernet-mode plan's
CPU. It folds BatchNorm into the conv before it and names the folded weights `onnx::Conv_N`;
those are renamed after the node's module scope (`/stem/conv/Conv` -> `stem.conv.weight`). A
trace follows the one path the sample took, so its graph is used only once ONNX Runtime runs
it, at another batch size, to what the model computes (`export_memo.agrees`); otherwise, and
where tracing fails, the dynamo exporter exports the model. Baseline and compressed models go
through the same choice, so their latencies compare like with like.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import tempfile
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
from adacomp.search_spaces.techniques.quantize import WEIGHTED_OPS, quantize_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
TRACE_OPSET = 20  # what torch's dynamo exporter writes, so both exporters' graphs are alike


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
    """The fast exporter's graph where it answers like the model, else the dynamo exporter's."""
    traced = _traced(baked, example)
    if traced is not None:
        return traced
    return _dynamo_exported(baked, example)


def _traced(baked: nn.Module, example: torch.Tensor) -> onnx.ModelProto | None:
    """The TorchScript exporter's graph, weights named after their layers; None where tracing
    fails or its graph does not compute what the model does on a batch of another size."""
    try:
        with _quiet(), torch.no_grad(), tempfile.TemporaryDirectory(prefix="adacomp-export-") as folder:
            path = os.path.join(folder, "traced.onnx")
            torch.onnx.export(
                baked,
                (example,),
                path,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=TRACE_OPSET,
                do_constant_folding=True,
            )
            proto = onnx.load(path)
    except Exception:  # any tracing failure: the dynamo exporter gets its turn
        return None
    named = _weights_named_by_layer(proto, baked)
    if named is None:
        return None
    proto = _without_node_metadata(named)
    other_batch = torch.cat([example, example[:1]])
    return proto if export_memo.agrees(proto, baked, other_batch) else None


def _weights_named_by_layer(proto: onnx.ModelProto, model: nn.Module) -> onnx.ModelProto | None:
    """Initializers the exporter named itself (`onnx::Conv_12`, a conv with its BatchNorm folded
    in) take the name of the parameter they stand for, read off the node's module scope; a layer
    called twice keeps one name per call (`conv.weight`, `conv.weight.1`). None where a weighted
    node's weight cannot be put to its own layer (no scope, or the exporter merged two layers'
    equal weights into one): quantization could not find it."""
    chains = _scope_chains(model)
    known = {name for chain in chains.values() for name in chain}
    parameters = dict(model.named_parameters(remove_duplicate=False))
    graph = proto.graph
    _constants_as_initializers(graph)
    initializers = {init.name: init for init in graph.initializer}
    taken = set(initializers)
    renamed: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        layer = _scope_layer(node.name, chains, known)
        weight = node.input[1]
        if layer is None:
            if weight.startswith("onnx::"):
                return None  # a weight of the exporter's naming that no layer claims
            continue
        if weight in renamed:
            if not renamed[weight].startswith(layer + "."):
                return None  # one folded weight read by two layers
            continue
        if weight in parameters and not weight.startswith(layer + "."):
            if parameters[weight] is not parameters.get(f"{layer}.weight"):
                return None  # not a tied weight: another layer's weights, merged because equal
            continue
        for slot, role in ((1, "weight"), (2, "bias")):
            current = node.input[slot] if slot < len(node.input) else ""
            if current not in initializers or current in parameters or current in renamed:
                continue
            name, count = f"{layer}.{role}", 1
            while name in taken:
                name, count = f"{layer}.{role}.{count}", count + 1
            taken.add(name)
            renamed[current] = name
            initializers[current].name = name
    for node in graph.node:
        node.input[:] = [renamed.get(value, value) for value in node.input]
    return proto


def _constants_as_initializers(graph: onnx.GraphProto) -> None:
    """The trace writes constants as nodes, and stores equal tensors once, handing the copies
    out through Identity nodes (two convs with equal weights, folded biases that are all zero).
    Both become initializers under their own names, as the dynamo exporter writes them, except
    that every layer owns its weights, as in the model: torch's graph optimizer would merge
    equal ones, and quantizing one of two layers would then find no weights of its own."""
    initializers = {init.name: init for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        tensor: onnx.TensorProto | None = None
        if node.op_type == "Identity" and node.input[0] in initializers:
            tensor = initializers[node.input[0]]
        elif node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = node.attribute[0].t
        if tensor is None:
            kept.append(node)
            continue
        owned = onnx.TensorProto()
        owned.CopyFrom(tensor)
        owned.name = node.output[0]
        graph.initializer.append(owned)
        initializers[owned.name] = owned
    del graph.node[:]
    graph.node.extend(kept)


def _scope_chains(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Each module's qualified name -> the scope names the TorchScript exporter writes for it and
    its ancestors, root first. A scope name is the qualified name from its last non-numeric part
    on (`6.body.0` -> `body.0`, `stem.conv` -> `conv`, `3` -> `3`): torch.onnx's own rule."""

    def scope_name(qualified: str) -> str:
        atoms = qualified.split(".")
        last = max((i for i, atom in enumerate(atoms) if not atom.isnumeric()), default=0)
        return ".".join(atoms[last:])

    chains: dict[str, tuple[str, ...]] = {}
    for qualified, _ in model.named_modules():
        if not qualified:
            continue
        atoms = qualified.split(".")
        prefixes = [".".join(atoms[: i + 1]) for i in range(len(atoms))]
        chains[qualified] = tuple(
            scope_name(prefix) for prefix in prefixes if prefix in chains or prefix == qualified
        )
    return chains


def _scope_layer(node_name: str, chains: dict[str, tuple[str, ...]], known: set[str]) -> str | None:
    """The one module a TorchScript-exported node belongs to. Its name is the scopes of the called
    modules, root first, then the op (`/6/body/body.0/Conv`, `/6/body/body.0_1/Conv` for its
    second call); a container that is never called itself (a ModuleList) has no scope, so the
    node's scopes are a subsequence of the module's. `known`: every scope name of `chains`."""
    # A module's second call is scoped `body.0_1`; a name that is itself `conv_1` stays as it is.
    scopes = [
        part if part in known else re.sub(r"_\d+$", "", part) for part in node_name.split("/")[1:-1] if part
    ]
    if not scopes:
        return None
    found = [name for name, chain in chains.items() if chain[-1] == scopes[-1] and _in_order(scopes, chain)]
    return found[0] if len(found) == 1 else None


def _in_order(items: Sequence[str], within: Sequence[str]) -> bool:
    remaining = iter(within)
    return all(item in remaining for item in items)


def _dynamo_exported(baked: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
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

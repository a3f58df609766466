"""Post-training quantization of the exported ONNX graph: int8 (QDQ) or fp16.

`int8` quantizes weights per output channel, `int8_per_tensor` with one scale per tensor: per
channel is the usual choice (and necessary for depthwise convs); the search decides.

Weights use 7 of their 8 bits (`reduce_range`). On x86 CPUs without VNNI (AVX2, AVX-512F)
onnxruntime's u8s8 kernels add pairs of uint8 x int8 products in int16 (`vpmaddubsw`), which
saturates for full-range weights: the same QDQ graph then computes differently there than on a
VNNI CPU or an ARM phone. Measured on the digits CNN on an AVX2 EPYC: 98.06 % with full-range
weights against 99.17 % for the graph's exact QDQ arithmetic; 99.17 % with `reduce_range`. So
an artifact's accuracy is the same on every machine that evaluates or runs it.

Quantization is applied to the artifact that ships, with onnxruntime's own tools
(`quantize_static` in QDQ format with calibration data; the fp16 converter), so accuracy is
evaluated and latency measured on exactly the quantized graph. In torch the layer is untouched.
A plan uses one precision: mixing int8 and fp16 layers in one graph is refused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.params import ChoiceParam, ParamSpec, ParamValue
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques._base import Encoding, ExportTechnique, has_weights

PRECISION = ChoiceParam(("int8", "int8_per_tensor", "fp16"), default="int8")
WEIGHTED_OPS = frozenset({"Conv", "Gemm", "MatMul", "ConvTranspose"})


class Quantize(ExportTechnique):
    name = "quantize"
    summary = "post-training int8 (QDQ, per-channel) or fp16 quantization of the exported graph"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not has_weights(layer):
            return f"{type(layer).__name__} has no conv or linear weights"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"precision": PRECISION}

    def encode(self, encoding: Encoding, **params: ParamValue) -> Encoding:
        if params["precision"] == "int8":
            return encoding.with_(value_bits=8, per_channel_scale=True)
        if params["precision"] == "int8_per_tensor":
            return encoding.with_(value_bits=8)
        return encoding.with_(value_bits=16)

    def check_targets(self, targets: Mapping[str, Mapping[str, ParamValue]]) -> None:
        by_precision: dict[ParamValue, str] = {}
        for layer, params in sorted(targets.items()):
            by_precision.setdefault(params["precision"], layer)
        if len(by_precision) > 1:
            a, b = sorted(by_precision.items(), key=lambda kv: str(kv[0]))[:2]
            raise AdacompError(
                f"quantize: one plan uses one precision, got {a[0]} on {a[1]!r} and {b[0]} on {b[1]!r}"
            )


def nodes_by_layer(model: onnx.ModelProto, layers: Sequence[str]) -> dict[str, list[str]]:
    """The weighted ONNX nodes of each torch layer, matched by their weight initializer names."""
    initializers = {init.name for init in model.graph.initializer}
    found: dict[str, list[str]] = {layer: [] for layer in layers}
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        for name in node.input:
            if name not in initializers:
                continue
            owner = _owner(name, layers)
            if owner is not None:
                found[owner].append(node.name)
                break
    return found


def int8_region_nodes(model: onnx.ModelProto, weighted: set[str]) -> list[str]:
    """The unweighted nodes (adds, activations, pooling, reshapes) that lie wholly inside the
    int8 region: every weighted node they reach, upstream and downstream, is quantized, and no
    path leaves the graph. Quantizing them keeps activations int8 from layer to layer; left in
    float, each one costs a DequantizeLinear/QuantizeLinear pair. Measured by
    benchmarks/latency_choices.py on the host: all of MobileNetV2 x0.5 in int8 ran at 0.71x of
    fp32 with only its convs quantized and 0.96x with these nodes too; ResNet-8 1.17x -> 1.31x.
    Nodes that touch an unquantized layer or a graph input/output stay float (no extra pairs)."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_inputs = {value.name for value in graph.input}
    graph_outputs = {value.name for value in graph.output}

    def reaches_only_int8(start: onnx.NodeProto, upstream: bool) -> bool:
        seen: set[int] = set()
        stack = [start]
        found = False
        while stack:
            node = stack.pop()
            names = node.input if upstream else node.output
            for name in names:
                if not name or name in constants:
                    continue
                if name in (graph_inputs if upstream else graph_outputs):
                    return False
                if upstream:
                    neighbours = [producer[name]] if name in producer else []
                else:
                    neighbours = consumers.get(name, [])
                for neighbour in neighbours:
                    if neighbour.op_type in WEIGHTED_OPS:
                        if neighbour.name not in weighted:
                            return False
                        found = True
                    elif id(neighbour) not in seen:
                        seen.add(id(neighbour))
                        stack.append(neighbour)
        return found

    return [
        node.name
        for node in graph.node
        if node.op_type not in WEIGHTED_OPS
        and node.op_type != "Constant"
        and reaches_only_int8(node, upstream=True)
        and reaches_only_int8(node, upstream=False)
    ]


def _owner(initializer: str, layers: Sequence[str]) -> str | None:
    matches = [layer for layer in layers if initializer.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def quantize_onnx(
    model: onnx.ModelProto,
    precision_by_layer: Mapping[str, str],
    calibration: Sequence[np.ndarray] | None = None,
) -> onnx.ModelProto:
    """Quantize the weighted nodes of the given layers; others stay float32."""
    if not precision_by_layer:
        return model
    precisions = set(precision_by_layer.values())
    if len(precisions) > 1:
        raise AdacompError(f"quantize: one plan uses one precision, got {sorted(precisions)}")
    nodes = nodes_by_layer(model, list(precision_by_layer))
    missing = sorted(layer for layer, names in nodes.items() if not names)
    if missing:
        raise AdacompError(f"quantize: no weighted ONNX node found for layer {missing[0]!r}")
    selected = [name for names in nodes.values() for name in names]
    if precisions <= {"int8", "int8_per_tensor"}:
        if not calibration:
            raise AdacompError("quantize: int8 needs calibration batches (a few batches of inputs)")
        region = selected + int8_region_nodes(model, set(selected))
        return _int8(model, region, calibration, per_channel=precisions == {"int8"})
    return _fp16(model, selected)


def _int8(
    model: onnx.ModelProto, nodes: list[str], calibration: Sequence[np.ndarray], *, per_channel: bool
) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs a tip per call at WARNING
    try:
        with tempfile.TemporaryDirectory(prefix="adacomp-q-") as tmp:
            source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            onnx.save(model, source)
            quantize_static(
                str(source),
                str(target),
                calibration_reader(model, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=True,  # no int16 saturation on non-VNNI x86 (see the module docstring)
                nodes_to_quantize=nodes,
            )
            return onnx.load(target)
    finally:
        logging.getLogger().setLevel(quiet)


def calibration_reader(model: onnx.ModelProto, calibration: Sequence[np.ndarray]) -> Any:
    """onnxruntime's CalibrationDataReader over `calibration`, fed to the model's first input."""
    from onnxruntime.quantization import CalibrationDataReader

    input_name = model.graph.input[0].name

    class Batches(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.asarray(batch, dtype=np.float32)}

    return Batches()


def _fp16(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    weighted = {n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS}
    if weighted <= set(nodes):
        block: list[str] = []  # the whole graph is fp16: no casts between layers
    else:
        block = [n.name for n in model.graph.node if n.name not in set(nodes)]
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
    return _topologically_sorted(converted)


def _topologically_sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """The fp16 converter appends its Cast nodes at the end; ONNX requires topological order."""
    import onnx_ir as ir

    graph_model = ir.from_proto(model)
    graph_model.graph.sort()
    return ir.to_proto(graph_model)

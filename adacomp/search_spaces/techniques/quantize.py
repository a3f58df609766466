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

`int8_weights` stores weights as int8 (symmetric, one scale per output channel) and computes in
float: each weight becomes an int8 initializer behind a DequantizeLinear, which ONNX Runtime folds
back to float when the session is created, so storage is a quarter and latency the float model's.
That is the int8 that pays on CPUs where int8 kernels do not: measured on the host by
benchmarks/latency_choices.py, full int8 QDQ runs MobileNetV2 x0.5 channel-pruned by half at 0.70x
of its float speed, weight-only int8 at 0.93x (0.762 / 0.577 against 0.536 ms). ORT folds these
nodes only with its QDQ fusion off (`session.disable_quant_qdq`), so the artifact declares that in
its metadata and every session adacomp opens honours it (adacomp.runtime.session). onnxruntime's
own weight-only tools (`matmul_nbits_quantizer`) cover MatMul and Gather only, not Conv: this
rewrite is ours.
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

PRECISION = ChoiceParam(("int8", "int8_per_tensor", "int8_weights", "fp16"), default="int8")
# What each weighted op type keeps per output channel: the axis of its weight tensor.
OUTPUT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}
# Session config that lets ORT fold weight-only DequantizeLinear nodes at load time.
WEIGHTS_ONLY_SESSION_CONFIG = {"session.disable_quant_qdq": "1"}
WEIGHTED_OPS = frozenset({"Conv", "Gemm", "MatMul", "ConvTranspose"})


class Quantize(ExportTechnique):
    name = "quantize"
    summary = "post-training quantization of the exported graph: int8 (QDQ), int8 weights only, fp16"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        if not has_weights(layer):
            return f"{type(layer).__name__} has no conv or linear weights"
        return None

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {"precision": PRECISION}

    def encode(self, encoding: Encoding, **params: ParamValue) -> Encoding:
        if params["precision"] in ("int8", "int8_weights"):
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
    if precisions == {"int8_weights"}:
        return int8_weights(model, selected)
    return _fp16(model, selected)


def int8_weights(model: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose named nodes read int8 weights through DequantizeLinear (symmetric,
    per output channel, 8 bits: no kernel consumes them, so no `reduce_range` is needed), and
    whose metadata asks ORT to fold those nodes at load time (module docstring)."""
    from onnx import helper, numpy_helper

    from adacomp.runtime.session import SESSION_CONFIG_KEY, encode_session_config

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise AdacompError(
            f"quantize: int8_weights needs ONNX opset >= 13 (per-axis DequantizeLinear), got {opset}"
        )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    initializers = {init.name: init for init in graph.initializer}
    wanted = set(nodes)
    dequantize: list[onnx.NodeProto] = []
    done: set[str] = set()
    for node in graph.node:
        if node.name not in wanted or len(node.input) < 2:
            continue
        weight = node.input[1]
        source = initializers.get(weight)
        if weight in done or source is None or source.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(source)
        if values.ndim < 2:
            continue
        axis = _output_axis(node)
        q, scale = _symmetric_int8(values, axis)
        graph.initializer.remove(source)
        graph.initializer.extend(
            [numpy_helper.from_array(q, f"{weight}.int8"), numpy_helper.from_array(scale, f"{weight}.scale")]
        )
        dequantize.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{weight}.int8", f"{weight}.scale"],
                [weight],
                name=f"{weight}.dequantize",
                axis=axis,
            )
        )
        done.add(weight)
    if not done:
        return result
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend([*dequantize, *body])  # constants first: the graph stays topologically sorted
    entries = {p.key: p.value for p in result.metadata_props}
    entries[SESSION_CONFIG_KEY] = encode_session_config(WEIGHTS_ONLY_SESSION_CONFIG)
    del result.metadata_props[:]
    onnx.helper.set_model_props(result, entries)
    return result


def _output_axis(node: onnx.NodeProto) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return OUTPUT_AXIS.get(node.op_type, 0)


def _symmetric_int8(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 values in [-127, 127] and one float32 scale per slice along `axis` (an all-zero
    slice, a pruned channel, gets scale 1 and stays exactly zero)."""
    others = tuple(i for i in range(values.ndim) if i != axis)
    peak = np.abs(values).max(axis=others).astype(np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.clip(np.rint(values / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


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

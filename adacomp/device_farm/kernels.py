"""The kernels ONNX Runtime really runs: its optimised graph, priced node by node.

nn-Meter's finding (Zhang et al., MobiSys'21) is that latency predictors fail when they price
the exported graph rather than what the runtime executes after fusing it. So the emulator asks
ONNX Runtime itself: a session is created with ``SessionOptions.optimized_model_filepath`` at the
graph-optimisation level the device runs, and the saved graph is what gets priced. Every fusion
ORT does is therefore counted exactly as ORT does it: Conv+BatchNorm+activation into FusedConv,
QDQ groups into QLinearConv/QGemm/QLinearAdd, elided Q/DQ pairs, and, at level ``all`` on x86,
the NCHWc layout (``com.microsoft.nchwc`` Conv with the residual Add folded in, plus the
ReorderInput/ReorderOutput transforms that cost real time).

ORT records few shapes in the saved graph's value_info, so `complete_shapes` takes the exported
graph's inferred shapes for the tensors ORT kept by name and derives the rest (its NCHWc tensors,
fused outputs) with the ops' own shape rules. The session is created and dropped at once (no
run), about 15 ms for a MobileNetV2. A shape neither knows, because the graph computes it at run
time (ShuffleNetV2's split and channel shuffle), is observed from one run of the saved graph
(``observed_shapes.py``, a few ms), only for a graph that has one. `runtime_summary` caches the
result per (model hash, level, batch size), so a model seen before costs a lookup.

Level ``all`` on x86 is this machine's graph (the host device); a phone or board profile uses
``extended``, the fusions every CPU gets (NCHWc is x86-only). One exception: fp16 graphs on a
device with fp16 kernels are priced from the replay in ``graph.py``, because ORT on x86 wraps
fp16 nodes in Casts an ARM core with FEAT_FP16 does not need.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import onnx

from adacomp.device_farm.graph import GraphSummary, analyze, infer_shapes, with_batch_size
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.observed_shapes import observe_unknown_shapes
from adacomp.device_farm.profiles import KernelGraph
from adacomp.errors import AdacompError

_CACHE_SIZE = 4096
# Convolutions whose output shape ORT may leave unrecorded, and where their weight is.
_WEIGHT_INPUT = {"Conv": 1, "FusedConv": 1, "QLinearConv": 3}
# Ops whose output has the broadcast shape of their inputs (elementwise, Q/DQ, activations).
_SAME_SHAPE_OPS = frozenset(
    {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Max",
        "Min",
        "Relu",
        "Clip",
        "Sigmoid",
        "Tanh",
        "LeakyRelu",
        "HardSigmoid",
        "HardSwish",
        "Erf",
        "Gelu",
        "FastGelu",
        "BiasGelu",
        "QuickGelu",
        "Softmax",
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearAdd",
        "QLinearMul",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "Cast",
        "Identity",
        "ReorderInput",
        "Dropout",
    }
)
# Where the output zero point of a quantized op completed here is: its type is the output's (the
# last input is not: QLinearConv's is its int32 bias).
_OUTPUT_ZERO_POINT = {
    "QuantizeLinear": 2,
    "QLinearConv": 7,
    "QLinearAdd": 7,
    "QLinearMul": 7,
    "QGemm": 8,
    "QLinearGlobalAveragePool": 4,
    "QLinearSigmoid": 4,
    "QLinearLeakyRelu": 4,
}
_cache: OrderedDict[tuple[str, str, int], GraphSummary] = OrderedDict()
_lock = threading.Lock()


def runtime_graph(data: bytes, level: Literal["extended", "all"]) -> onnx.ModelProto:
    """The graph ONNX Runtime's CPU provider runs for `data` at optimisation `level`."""
    from adacomp.runtime.session import declared_session_config, open_session

    with tempfile.TemporaryDirectory(prefix="adacomp-kernels-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        try:
            config = declared_session_config(data)
            open_session(
                data, threads=1, optimization=level, quiet=True, config=config, optimized_model_path=path
            )
            return onnx.load(str(path))
        except Exception as exc:  # ORT raises its own exception types; one line either way
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AdacompError(f"onnxruntime cannot optimise the model: {first}") from None


def runtime_summary(model: OnnxModel, graph: KernelGraph, batch_size: int = 1) -> GraphSummary:
    """The priced kernels of `model` as the runtime runs them (cached per model hash)."""
    key = (model.sha256, graph, batch_size)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    if graph == "replay":
        summary = _replay_summary(model, batch_size)
    else:
        optimized = with_batch_size(runtime_graph(model.data, graph), batch_size)
        complete_shapes(optimized.graph, known=inferred_shapes(model.proto(), batch_size))
        try:
            summary = _summary_with_observed_shapes(optimized, batch_size)
        except AdacompError:
            # A node the analysis cannot price even with the shapes ORT observes: price the
            # replay instead (the same kernels for the fusions it knows) rather than refuse.
            summary = _replay_summary(model, batch_size)
    with _lock:
        _cache[key] = summary
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return summary


def _replay_summary(model: OnnxModel, batch_size: int) -> GraphSummary:
    """The exported graph priced as ``graph.py`` replays ORT's fusions on it."""
    return _summary_with_observed_shapes(infer_shapes(model.proto(), batch_size), batch_size)


def _summary_with_observed_shapes(proto: onnx.ModelProto, batch_size: int) -> GraphSummary:
    """`analyze` over the shapes `proto` records, with those still unknown observed from a run of
    ORT first (``observed_shapes.py``). Where ORT cannot run it either, the analysis still prices
    every node that needs no unknown shape, and refuses the first that does saying why ORT did
    not help."""
    try:
        observe_unknown_shapes(proto)
    except AdacompError as unobserved:
        try:
            return analyze(proto, batch_size=batch_size, shapes_given=True)
        except AdacompError as refused:
            raise AdacompError(f"{refused}; {unobserved}") from None
    return analyze(proto, batch_size=batch_size, shapes_given=True)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def has_fp16(model: OnnxModel) -> bool:
    """Whether any activation of `model` is float16 (the fp16 converter's output)."""
    graph = model.proto().graph
    fp16 = onnx.TensorProto.FLOAT16
    return any(
        v.type.tensor_type.elem_type == fp16 for v in [*graph.input, *graph.value_info, *graph.output]
    ) or any(init.data_type == fp16 for init in graph.initializer)


def inferred_shapes(proto: onnx.ModelProto, batch_size: int) -> onnx.GraphProto:
    """The exported graph's tensors with ONNX's shape inference: ORT keeps most of their names."""
    return infer_shapes(proto, batch_size).graph


def complete_shapes(graph: onnx.GraphProto, known: onnx.GraphProto | None = None) -> None:
    """Add value_info for the outputs ORT left without a shape (its NCHWc tensors), in place.

    First from `known` (the exported graph's inferred shapes, for tensors ORT kept by name),
    then by the ops' own rules: Conv from its weight and the usual output-size rule, pools from
    their kernel, Reorder ops keep the shape (ReorderOutput's ``channels``), Gemm, Reshape,
    Flatten, Transpose, and elementwise ops broadcast their inputs. Shapes are logical (NCHW,
    channels unpadded)."""
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    recorded = {value.name for value in [*graph.input, *graph.value_info, *graph.output]}
    produced = {out for node in graph.node for out in node.output if out}
    for value in known.value_info if known is not None else []:
        if value.name in produced and value.name not in recorded:
            graph.value_info.append(value)
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
            types[value.name] = tensor.elem_type
    values: dict[str, list[int]] = {}
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
        types[init.name] = init.data_type
        if init.data_type == onnx.TensorProto.INT64 and len(init.dims) == 1:
            values[init.name] = [int(v) for v in onnx.numpy_helper.to_array(init)]
    progress = True
    while progress:  # until nothing more can be derived (ORT's node order is not guaranteed)
        progress = False
        for node in graph.node:
            missing = [out for out in node.output if out and out not in shapes]
            if not missing:
                continue
            shape = _output_shape(node, shapes, values)
            if shape is None:
                continue
            elem_type = _output_type(node, types)
            out = missing[0]  # the ops completed here have one output
            shapes[out] = shape
            types[out] = elem_type
            graph.value_info.append(onnx.helper.make_tensor_value_info(out, elem_type, list(shape)))
            progress = True


def _output_type(node: onnx.NodeProto, types: dict[str, int]) -> int:
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to":
            return int(attr.i)
    if node.op_type in _OUTPUT_ZERO_POINT:
        index = _OUTPUT_ZERO_POINT[node.op_type]
        zero_point = node.input[index] if len(node.input) > index else ""
        if zero_point in types:
            return types[zero_point]
        # No output zero point: QuantizeLinear's default is uint8, a QGemm without one is float.
        return onnx.TensorProto.FLOAT if node.op_type == "QGemm" else onnx.TensorProto.UINT8
    if node.op_type == "DequantizeLinear":
        return onnx.TensorProto.FLOAT
    return next((types[name] for name in node.input if name in types), onnx.TensorProto.FLOAT)


def _output_shape(
    node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]], values: dict[str, list[int]]
) -> tuple[int, ...] | None:
    inputs = [shapes.get(name) for name in node.input]
    first = inputs[0] if inputs else None
    if first is None:
        return None
    attrs: dict[str, Any] = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
    op = node.op_type
    if op == "ReorderOutput":
        channels = int(attrs.get("channels", first[1]))
        n, _, *spatial = first
        return (n, *spatial, channels) if attrs.get("channels_last") else (n, channels, *spatial)
    if op == "ReorderInput":
        if attrs.get("channels_last"):
            n, *spatial, c = first
            return (n, c, *spatial)
        return first
    if op in ("Gemm", "FusedGemm", "QGemm"):
        b = inputs[3 if op == "QGemm" else 1] if len(inputs) > (3 if op == "QGemm" else 1) else None
        if b is None or len(first) != 2 or len(b) != 2:
            return None
        m = first[1] if attrs.get("transA") else first[0]
        return (m, b[0] if attrs.get("transB") else b[1])
    if op == "Transpose":
        perm = list(attrs.get("perm") or reversed(range(len(first))))
        return tuple(first[i] for i in perm)
    if op in ("GlobalAveragePool", "GlobalMaxPool", "QLinearGlobalAveragePool"):
        ones = [1] * (len(first) - 2)
        return (first[0], *ones, first[-1]) if attrs.get("channels_last") else (*first[:2], *ones)
    if op in _WEIGHT_INPUT or op in ("MaxPool", "AveragePool", "NhwcMaxPool"):
        index = _WEIGHT_INPUT.get(op)
        weight = inputs[index] if index is not None and len(inputs) > index else None
        if index is not None and weight is None:
            return None
        last = bool(attrs.get("channels_last")) or op == "NhwcMaxPool"
        n, c, spatial_in = (first[0], first[-1], first[1:-1]) if last else (first[0], first[1], first[2:])
        kernel = list(attrs.get("kernel_shape") or (weight[2:] if weight is not None else []))
        channels = weight[0] if weight is not None else c
        spatial = _conv_spatial(spatial_in, kernel, attrs)
        return (n, *spatial, channels) if last else (n, channels, *spatial)
    if op == "Upsample" and "scales" in attrs:
        scales = list(attrs["scales"])
        return tuple(int(d * s) for d, s in zip(first, scales, strict=False))
    if op == "Reshape" and len(node.input) > 1 and node.input[1] in values:
        target = list(values[node.input[1]])
        target = [first[i] if d == 0 else d for i, d in enumerate(target)]
        if target.count(-1) == 1:
            rest = _numel([d for d in target if d != -1])
            target[target.index(-1)] = _numel(first) // max(1, rest)
        return tuple(target)
    if op.startswith("Reduce") or op in ("Squeeze", "Unsqueeze"):
        given = values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else attrs.get("axes")
        return _reduced(op, first, list(given) if given is not None else None, attrs)
    if op == "Concat":
        known = [shape for shape in inputs if shape is not None]
        if len(known) != len(inputs):
            return None
        axis = int(attrs.get("axis", 0)) % len(first)
        return tuple(sum(s[axis] for s in known) if i == axis else d for i, d in enumerate(first))
    if op == "Flatten":
        axis = int(attrs.get("axis", 1)) % max(1, len(first))
        return (_numel(first[:axis]), _numel(first[axis:]))
    if op not in _SAME_SHAPE_OPS:
        return None
    known = [shape for shape in inputs if shape is not None]
    rank = max(len(shape) for shape in known)
    padded = [(1,) * (rank - len(shape)) + shape for shape in known]
    return tuple(max(dims) for dims in zip(*padded, strict=True))


def _reduced(
    op: str, shape: tuple[int, ...], axes: list[int] | None, attrs: dict[str, Any]
) -> tuple[int, ...]:
    """Output shape of a Reduce*, Squeeze or Unsqueeze over `axes` (None: every axis)."""
    if op == "Unsqueeze":
        rank = len(shape) + len(axes or [])
        where = {a % rank for a in axes or []}
        rest = iter(shape)
        return tuple(1 if i in where else next(rest) for i in range(rank))
    rank = len(shape)
    if op == "Squeeze":
        where = {a % rank for a in axes} if axes else {i for i, d in enumerate(shape) if d == 1}
        return tuple(d for i, d in enumerate(shape) if i not in where)
    if not axes and attrs.get("noop_with_empty_axes"):
        return shape
    where = {a % rank for a in axes} if axes else set(range(rank))
    if attrs.get("keepdims", 1):
        return tuple(1 if i in where else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in where)


def _numel(dims: Sequence[int]) -> int:
    total = 1
    for dim in dims:
        total *= int(dim)
    return total


def _conv_spatial(spatial: Sequence[int], kernel: Sequence[int], attrs: dict[str, Any]) -> list[int]:
    rank = len(spatial)
    strides = list(attrs.get("strides") or [1] * rank)
    dilations = list(attrs.get("dilations") or [1] * rank)
    pads = list(attrs.get("pads") or [0] * (2 * rank))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    out = []
    for i, size in enumerate(spatial):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-size // strides[i]))
            continue
        effective = dilations[i] * (kernel[i] - 1) + 1 if i < len(kernel) else 1
        if attrs.get("ceil_mode"):
            out.append(-(-(size + pads[i] + pads[i + rank] - effective) // strides[i]) + 1)
        else:
            out.append((size + pads[i] + pads[i + rank] - effective) // strides[i] + 1)
    return out

"""What an ONNX graph asks of a CPU, node by node: MACs, bytes, precision, and what the runtime folds.

The emulated devices price a model from this summary, so it follows what ONNX Runtime's CPU
execution provider actually runs rather than what the file literally says:

- Nodes whose inputs are all constant are folded at session creation (ORT's constant folding):
  weight DequantizeLinear of an int8 initializer, the fp16 converter's weight Casts. They cost
  nothing; their output counts as a weight of the node that reads it.
- QDQ models (``quantize_static(..., QuantFormat.QDQ)``): a Conv whose activation input and weight
  come from DequantizeLinear (the weight from an int8 initializer) and whose output goes only to
  QuantizeLinear is fused into QLinearConv; Gemm/MatMul likewise into QGemm/MatMulIntegerToFloat,
  with the output QuantizeLinear optional (ORT's QDQ selectors: ``qdq_selectors.cc``). Such a node
  is an int8 op reading uint8 activations and int8 weights; the DQ/Q nodes it absorbed cost
  nothing. Any other Q/DQ node is real work (``OpKind.QUANTIZE``).
- An activation (Relu, Clip, Sigmoid, ...) that is the only reader of a float Conv's output is
  fused into the Conv (ORT's ConvActivationFusion, on by default): it costs nothing and the Conv
  writes the activation's output.
- fp16 nodes are those whose activations are float16 (``onnxruntime.transformers.float16``).

Unstructured sparsity is reported (``GraphSummary.sparsity``) but changes no MAC or byte count:
dense kernels multiply the zeros too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import onnx
from onnx import numpy_helper

from adacomp.errors import AdacompError

Precision = Literal["fp32", "fp16", "int8"]


class OpKind(StrEnum):
    CONV = "conv"
    DEPTHWISE_CONV = "depthwise_conv"
    GEMM = "gemm"
    POOL = "pool"
    ELEMENTWISE = "elementwise"
    QUANTIZE = "quantize"
    RESHAPE = "reshape"
    OTHER = "other"


# Kinds whose time is MACs over throughput; every other kind is priced by bytes moved.
COMPUTE_KINDS: tuple[OpKind, ...] = (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.GEMM)

# ONNX ops and the contrib ops ONNX Runtime's optimised graphs contain (FusedConv, nchwc Conv).
_CONV_OPS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv"})
_GEMM_OPS = frozenset(
    {
        "Gemm",
        "MatMul",
        "QGemm",
        "QLinearMatMul",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "FusedGemm",
        "FusedMatMul",
        "DynamicQuantizeMatMul",
    }
)
_NATIVE_INT8_OPS = frozenset({"QLinearConv", "ConvInteger", "QGemm", "QLinearMatMul", "MatMulInteger"})
# Index of the weight input of each weighted op (the activation is input 0 everywhere).
_WEIGHT_INDEX = {
    "Conv": 1,
    "FusedConv": 1,
    "ConvTranspose": 1,
    "ConvInteger": 1,
    "QLinearConv": 3,
    "Gemm": 1,
    "FusedGemm": 1,
    "FusedMatMul": 1,
    "DynamicQuantizeMatMul": 1,
    "MatMul": 1,
    "MatMulInteger": 1,
    "MatMulIntegerToFloat": 1,
    "QGemm": 3,
    "QLinearMatMul": 3,
}
_POOL_OPS = frozenset(
    {
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "LpPool",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceSum",
        "ReduceL2",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "NhwcMaxPool",
    }
)
_ELEMENTWISE_OPS = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Softsign",
        "Mish",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Reciprocal",
        "Exp",
        "Log",
        "Erf",
        "Neg",
        "Abs",
        "Max",
        "Min",
        "Sum",
        "Mean",
        "Where",
        "Equal",
        "Less",
        "Greater",
        "Not",
        "And",
        "Or",
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "Softmax",
        "LogSoftmax",
        "Dropout",
        "QLinearAdd",
        "BiasGelu",
        "FastGelu",
        "QLinearSoftmax",
        "QLinearMul",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
    }
)
_QUANTIZE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
_RESHAPE_OPS = frozenset(
    {
        "Reshape",
        "Flatten",
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "Shape",
        "Size",
        "Cast",
        "CastLike",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Expand",
        "Tile",
        "Pad",
        "Constant",
        "ConstantOfShape",
        "Range",
        "DepthToSpace",
        "SpaceToDepth",
        "QLinearConcat",
        "ReorderInput",  # ORT's NCHWc layout transforms (com.microsoft.nchwc)
        "ReorderOutput",
    }
)
# Activations ORT's ConvActivationFusion folds into a float Conv (conv_activation_fusion.cc).
_FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid"})
_INT8_TYPES = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.UINT8})
_ITEMSIZE: dict[int, int] = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.INT16: 2,
    onnx.TensorProto.UINT16: 2,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.UINT32: 4,
    onnx.TensorProto.INT64: 8,
    onnx.TensorProto.UINT64: 8,
    onnx.TensorProto.BOOL: 1,
}


@dataclass(frozen=True)
class Geometry:
    """The shape of a conv or gemm kernel (a gemm is a 1x1 conv over `out_pixels` rows)."""

    in_channels: int
    out_channels: int
    kernel_area: int
    stride: int
    groups: int
    out_pixels: int  # output positions per image


@dataclass(frozen=True)
class OpCost:
    """What one node asks of the device. Byte counts are at the size the runtime reads them."""

    name: str
    op_type: str
    kind: OpKind
    dtype: Precision
    macs: int
    weight_bytes: int  # constant inputs (int8 weights count 1 byte each)
    activation_bytes_in: int
    activation_bytes_out: int
    # Removed by the runtime at session creation (constant folding, or fused into a neighbouring
    # QLinearConv/QGemm): costs nothing at inference time.
    fused: bool = False
    # Conv and gemm kernels only: what a learned per-kernel model reads beyond MACs and bytes
    # (a 1x1 and a 3x3 conv of equal MACs run at different speeds).
    geometry: Geometry | None = None

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.activation_bytes_in + self.activation_bytes_out


@dataclass(frozen=True)
class GraphSummary:
    ops: tuple[OpCost, ...]
    macs: int  # for the whole batch
    weight_bytes: int  # distinct constants the executed nodes read, at stored size
    peak_activation_bytes: int  # most bytes of intermediate tensors alive at once
    sparsity: float  # share of exact zeros in conv/gemm weights: reported, never a speed-up
    batch_size: int = 1

    @property
    def executed(self) -> tuple[OpCost, ...]:
        """The nodes the runtime actually dispatches."""
        return tuple(op for op in self.ops if not op.fused)

    def macs_by_kind(self) -> dict[OpKind, int]:
        totals: dict[OpKind, int] = {}
        for op in self.executed:
            totals[op.kind] = totals.get(op.kind, 0) + op.macs
        return totals


@dataclass(frozen=True)
class _Tensor:
    elem_type: int
    shape: tuple[int, ...] | None  # None: unknown after shape inference

    @property
    def numel(self) -> int | None:
        return None if self.shape is None else int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int | None:
        numel = self.numel
        return None if numel is None else numel * _ITEMSIZE.get(self.elem_type, 4)


def analyze(proto: onnx.ModelProto, batch_size: int = 1, *, shapes_given: bool = False) -> GraphSummary:
    """Per-node costs of `proto` run on a batch of `batch_size`; refuses what it cannot price.

    `shapes_given=True` trusts the shapes the file carries (its value_info, with symbolic dims
    set to `batch_size`): what an optimised graph saved by ONNX Runtime needs, since ONNX's own
    inference does not know its contrib ops (``kernels.py`` completes the few it leaves out)."""
    if batch_size < 1:
        raise AdacompError(f"batch_size must be >= 1, got {batch_size}")
    model = _given_shapes(proto, batch_size) if shapes_given else infer_shapes(proto, batch_size)
    return _Analysis(model.graph, batch_size).summary()


def _given_shapes(proto: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    return with_batch_size(model, batch_size)


def with_batch_size(proto: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
    """`proto` with its batch dimension set to `batch_size` wherever its recorded shapes carry it:
    the symbolic first dim of the inputs, by name, in every shape. Other symbolic dims (a
    data-dependent height) stay unknown, so the node that needs them is refused by name."""
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    batch_names = set()
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and dims and dims[0].HasField("dim_param"):
            batch_names.add(dims[0].dim_param)
    for value in [*graph.input, *graph.value_info, *graph.output]:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            unnamed_batch = index == 0 and not dim.HasField("dim_param") and dim.dim_value <= 0
            if unnamed_batch or (dim.HasField("dim_param") and dim.dim_param in batch_names):
                dim.Clear()
                dim.dim_value = batch_size
    return proto


def infer_shapes(proto: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
    """A copy with symbolic input dims set to `batch_size` and every intermediate shape inferred."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    # Stale value_info (the fp16 converter leaves some behind) would contradict the inference.
    del model.graph.value_info[:]
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") or dim.dim_value <= 0:
                dim.Clear()
                dim.dim_value = batch_size
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # InferenceError and protobuf errors alike
        first = (str(exc).strip().splitlines() or ["failed"])[0]
        raise AdacompError(f"ONNX shape inference failed: {first}") from None


class _Analysis:
    """One pass over a shape-inferred graph; `summary()` is the only entry point."""

    def __init__(self, graph: onnx.GraphProto, batch_size: int) -> None:
        self.graph = graph
        self.batch_size = batch_size
        self.initializers = {init.name: init for init in graph.initializer}
        self.tensors = _tensor_types(graph)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(node)
        self.graph_outputs = {value.name for value in graph.output}
        self.constants = self._constant_tensors()
        self.int8_ops = {id(node) for node in graph.node if self._is_fused_int8(node)}
        # id(conv) -> the activation node fused into it
        self.activation_of = {id(conv): act for conv, act in self._conv_activation_pairs()}
        self.fused_activations = {id(act) for act in self.activation_of.values()}

    # --- classification ---------------------------------------------------------------------
    def _constant_tensors(self) -> set[str]:
        """Initializers and everything computed from them alone (folded at session creation)."""
        constants = set(self.initializers)
        for node in self.graph.node:  # topological order: producers come first
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant" or (inputs and all(name in constants for name in inputs)):
                constants.update(out for out in node.output if out)
        return constants

    def _dq_of_initializer(self, name: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        source = self.initializers.get(node.input[0])
        return node if source is not None and source.data_type in _INT8_TYPES else None

    def _dq_of_activation(self, name: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] in self.constants:
            return None
        return node

    def _is_fused_int8(self, node: onnx.NodeProto) -> bool:
        """Whether ORT runs this node with int8 kernels (QDQ fusion or a native int8 op)."""
        if node.op_type in _NATIVE_INT8_OPS:
            return True
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            return False
        if self._dq_of_activation(node.input[0]) is None:
            return False
        weight = node.input[1]
        if self._dq_of_initializer(weight) is None and not (
            node.op_type == "MatMul" and self._dq_of_activation(weight) is not None
        ):
            return False
        if node.op_type == "Conv":  # QLinearConv needs a quantized output
            output = node.output[0]
            users = self.consumers.get(output, [])
            return (
                bool(users)
                and output not in self.graph_outputs
                and all(user.op_type == "QuantizeLinear" for user in users)
            )
        return True

    def _conv_activation_pairs(self) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
        pairs = []
        for node in self.graph.node:
            if node.op_type != "Conv" or id(node) in self.int8_ops or node.output[0] in self.graph_outputs:
                continue
            users = self.consumers.get(node.output[0], [])
            if len(users) != 1 or users[0].op_type not in _FUSABLE_ACTIVATIONS:
                continue
            act = users[0]
            if all(name in self.constants for name in act.input[1:] if name):  # Clip bounds must be constant
                pairs.append((node, act))
        return pairs

    def _fused_output_q(self, node: onnx.NodeProto) -> onnx.NodeProto | None:
        """The QuantizeLinear an int8 op absorbs (its output's only consumer), if any."""
        if id(node) not in self.int8_ops or node.op_type in _NATIVE_INT8_OPS:
            return None
        output = node.output[0]
        users = self.consumers.get(output, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear" and output not in self.graph_outputs:
            return users[0]
        return None

    def _is_fused(self, node: onnx.NodeProto) -> bool:
        if id(node) in self.fused_activations:
            return True
        if any(out in self.constants for out in node.output if out):
            return True  # constant-folded
        if node.op_type == "DequantizeLinear":
            users = self.consumers.get(node.output[0], [])
            return (
                bool(users)
                and node.output[0] not in self.graph_outputs
                and all(id(user) in self.int8_ops for user in users)
            )
        if node.op_type == "QuantizeLinear":
            source = self.producer.get(node.input[0])
            return source is not None and self._fused_output_q(source) is node
        return False

    def _kind(self, node: onnx.NodeProto) -> OpKind:
        op = node.op_type
        if op in _CONV_OPS:
            return OpKind.DEPTHWISE_CONV if self._is_depthwise(node) else OpKind.CONV
        if op in _GEMM_OPS:
            return OpKind.GEMM
        for kinds, kind in (
            (_POOL_OPS, OpKind.POOL),
            (_ELEMENTWISE_OPS, OpKind.ELEMENTWISE),
            (_QUANTIZE_OPS, OpKind.QUANTIZE),
            (_RESHAPE_OPS, OpKind.RESHAPE),
        ):
            if op in kinds:
                return kind
        return OpKind.OTHER

    def _is_depthwise(self, node: onnx.NodeProto) -> bool:
        """group == input channels > 1 (one filter per channel)."""
        group = _int_attr(node, "group", 1)
        if group <= 1 or node.op_type not in ("Conv", "FusedConv", "QLinearConv", "ConvInteger"):
            return False
        shape = self._shape(node.input[0], node)
        channels = shape[-1] if _int_attr(node, "channels_last", 0) else shape[1] if len(shape) >= 2 else 0
        return len(shape) >= 2 and channels == group

    # --- shapes and bytes -------------------------------------------------------------------
    def _shape(self, name: str, node: onnx.NodeProto) -> tuple[int, ...]:
        tensor = self.tensors.get(name)
        if tensor is None or tensor.shape is None:
            raise AdacompError(
                f"node {node.name or node.op_type!r} ({node.op_type}): shape of {name!r} is unknown after "
                "shape inference; export with static shapes except the batch dimension"
            )
        return tensor.shape

    def _nbytes(self, name: str) -> int:
        tensor = self.tensors.get(name)
        size = None if tensor is None else tensor.nbytes
        return size or 0

    def _initializer_bytes(self, name: str) -> int:
        init = self.initializers[name]
        return int(np.prod(init.dims, dtype=np.int64)) * _ITEMSIZE.get(init.data_type, 4)

    def _weight_inputs(self, node: onnx.NodeProto, int8: bool) -> dict[str, int]:
        """Constant inputs -> bytes read; an int8 op reads its DQ'd weights at stored (int8) size."""
        weights: dict[str, int] = {}
        for name in node.input:
            if not name or name not in self.constants:
                continue
            dq = self._dq_of_initializer(name) if int8 else None
            if dq is None:
                dq = self._dq_int32_bias(name) if int8 else None
            if dq is not None:
                for part in dq.input:
                    if part in self.initializers:
                        weights[part] = self._initializer_bytes(part)
            elif name in self.initializers:
                weights[name] = self._initializer_bytes(name)
            else:
                weights[name] = self._nbytes(name)
        return weights

    def _dq_int32_bias(self, name: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in self.initializers:
            return None
        return node

    def _activation_inputs(self, node: onnx.NodeProto, int8: bool) -> list[str]:
        """The tensors the node reads at run time (an int8 op reads the uint8 tensor behind its DQ)."""
        names = []
        for name in node.input:
            if not name or name in self.constants:
                continue
            dq = self._dq_of_activation(name) if int8 else None
            names.append(dq.input[0] if dq is not None else name)
        return names

    def _activation_outputs(self, node: onnx.NodeProto) -> list[str]:
        activation = self.activation_of.get(id(node))
        if activation is not None:
            return [activation.output[0]]
        fused_q = self._fused_output_q(node)
        if fused_q is not None:
            return [fused_q.output[0]]
        return [name for name in node.output if name]

    def _macs(self, node: onnx.NodeProto, kind: OpKind) -> int:
        if kind not in COMPUTE_KINDS:
            return 0
        op = node.op_type
        weight = node.input[_WEIGHT_INDEX[op]]
        w_shape = self._shape(weight, node)
        out = self._shape(node.output[0], node)
        if op == "ConvTranspose":  # every input pixel scatters a Cout/group x kernel patch
            return _prod(self._shape(node.input[0], node)) * _prod(w_shape[1:])
        if op in _CONV_OPS:  # out_numel * (Cin / group) * prod(kernel)
            return _prod(out) * _prod(w_shape[1:])
        a_shape = self._shape(node.input[0], node)
        if op in ("Gemm", "QGemm"):
            k = a_shape[0] if _int_attr(node, "transA", 0) else a_shape[-1]
            return _prod(out) * k  # M * N * K
        return _prod(out) * a_shape[-1]  # MatMul: every output element is a K-long dot product

    def _geometry(self, node: onnx.NodeProto, kind: OpKind) -> Geometry | None:
        """Channels, kernel area, stride, groups and output positions of a conv or gemm."""
        if kind not in COMPUTE_KINDS:
            return None
        w_shape = self._shape(node.input[_WEIGHT_INDEX[node.op_type]], node)
        out = self._shape(node.output[0], node)
        if node.op_type in _CONV_OPS:
            groups = _int_attr(node, "group", 1)
            out_channels = w_shape[1] * groups if node.op_type == "ConvTranspose" else w_shape[0]
            in_channels = w_shape[0] if node.op_type == "ConvTranspose" else w_shape[1] * groups
            strides = _ints_attr(node, "strides")
            return Geometry(
                in_channels=int(in_channels),
                out_channels=int(out_channels),
                kernel_area=_prod(w_shape[2:]),
                stride=max(strides) if strides else 1,
                groups=groups,
                out_pixels=_prod(out) // max(1, self.batch_size * int(out_channels)),
            )
        transposed = node.op_type in ("Gemm", "FusedGemm", "QGemm") and _int_attr(node, "transB", 0)
        k, n = (w_shape[-1], w_shape[-2]) if transposed and len(w_shape) >= 2 else (w_shape[0], w_shape[-1])
        return Geometry(
            in_channels=int(k),
            out_channels=int(n),
            kernel_area=1,
            stride=1,
            groups=1,
            out_pixels=_prod(out) // max(1, self.batch_size * int(n)),
        )

    def _dtype(self, node: onnx.NodeProto, kind: OpKind, int8: bool) -> Precision:
        if int8 or kind is OpKind.QUANTIZE:
            return "int8"
        names = [n for n in node.input if n and n not in self.constants] or [n for n in node.output if n]
        types = {self.tensors[n].elem_type for n in names if n in self.tensors}
        if node.op_type == "Cast":
            types = {self.tensors[n].elem_type for n in node.output if n in self.tensors} | types
        if onnx.TensorProto.FLOAT16 in types:
            return "fp16"
        if types and types <= _INT8_TYPES:
            return "int8"
        return "fp32"

    # --- the summary ------------------------------------------------------------------------
    def summary(self) -> GraphSummary:
        ops: list[OpCost] = []
        steps: list[tuple[list[str], list[str]]] = []  # (reads, writes) of each executed node
        weights: dict[str, int] = {}
        for node in self.graph.node:
            name = node.name or f"{node.op_type}_{len(ops)}"
            kind = self._kind(node)
            if self._is_fused(node):
                dtype = self._dtype(node, kind, False)
                ops.append(OpCost(name, _qualified(node), kind, dtype, 0, 0, 0, 0, True))
                continue
            int8 = id(node) in self.int8_ops
            node_weights = self._weight_inputs(node, int8)
            reads = self._activation_inputs(node, int8)
            writes = self._activation_outputs(node)
            weights.update(node_weights)
            steps.append((reads, writes))
            ops.append(
                OpCost(
                    name=name,
                    op_type=_qualified(node),
                    kind=kind,
                    dtype=self._dtype(node, kind, int8),
                    macs=self._macs(node, kind),
                    weight_bytes=sum(node_weights.values()),
                    activation_bytes_in=sum(self._nbytes(n) for n in reads),
                    activation_bytes_out=sum(self._nbytes(n) for n in writes),
                    geometry=self._geometry(node, kind),
                )
            )
        return GraphSummary(
            ops=tuple(ops),
            macs=sum(op.macs for op in ops),
            weight_bytes=sum(weights.values()),
            peak_activation_bytes=self._peak_live_bytes(steps),
            sparsity=self._sparsity(),
            batch_size=self.batch_size,
        )

    def _peak_live_bytes(self, steps: Sequence[tuple[list[str], list[str]]]) -> int:
        """Liveness over the executed nodes: a tensor lives from its producer to its last reader."""
        inputs = [value.name for value in self.graph.input if value.name not in self.constants]
        born: dict[str, int] = dict.fromkeys(inputs, 0)
        last_use: dict[str, int] = dict.fromkeys(inputs, 0)
        for step, (reads, writes) in enumerate(steps):
            for name in reads:
                last_use[name] = step
            for name in writes:
                born.setdefault(name, step)
                last_use.setdefault(name, step)
        for name in self.graph_outputs:
            if name in last_use:
                last_use[name] = len(steps)
        peak = 0
        for step in range(max(len(steps), 1)):
            live = sum(self._nbytes(n) for n, start in born.items() if start <= step <= last_use[n])
            peak = max(peak, live)
        return peak

    def _sparsity(self) -> float:
        """Share of exact zeros among conv/gemm weight values (int8: values equal to the zero point)."""
        zeros = total = 0
        seen: set[str] = set()
        for node in self.graph.node:
            index = _WEIGHT_INDEX.get(node.op_type)
            if index is None or len(node.input) <= index:
                continue
            found = self._weight_values(node.input[index])
            if found is None or found[0] in seen:
                continue
            seen.add(found[0])
            values = found[1]
            zeros += int(values.size - np.count_nonzero(values))
            total += int(values.size)
        return zeros / total if total else 0.0

    def _weight_values(self, name: str) -> tuple[str, np.ndarray] | None:
        """(initializer name, values centred on zero) behind a weight, through Cast and DQ chains."""
        node = self.producer.get(name)
        while (
            node is not None
            and node.op_type in ("Cast", "Identity")
            and node.input[0] not in self.initializers
        ):
            node = self.producer.get(node.input[0])
        if node is not None and node.op_type in ("Cast", "Identity", "DequantizeLinear"):
            source = node.input[0]
            if source not in self.initializers:
                return None
            values = numpy_helper.to_array(self.initializers[source]).astype(
                np.int64 if node.op_type == "DequantizeLinear" else np.float64
            )
            if (
                node.op_type == "DequantizeLinear"
                and len(node.input) > 2
                and node.input[2] in self.initializers
            ):
                zero_point = numpy_helper.to_array(self.initializers[node.input[2]]).astype(np.int64)
                values = values - _broadcast_along(zero_point, values.ndim, _int_attr(node, "axis", 1))
            return source, values
        if name in self.initializers:
            return name, numpy_helper.to_array(self.initializers[name])
        return None


def _tensor_types(graph: onnx.GraphProto) -> dict[str, _Tensor]:
    types: dict[str, _Tensor] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        shape: tuple[int, ...] | None = None
        if tensor_type.HasField("shape"):
            dims = tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                shape = tuple(int(d.dim_value) for d in dims)
        types[value.name] = _Tensor(tensor_type.elem_type, shape)
    for init in graph.initializer:
        types[init.name] = _Tensor(init.data_type, tuple(int(d) for d in init.dims))
    return types


def _broadcast_along(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-channel parameter shaped to broadcast along `axis` of an `ndim`-d tensor."""
    if values.ndim == 0 or ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis % ndim] = values.size
    return values.reshape(shape)


def _qualified(node: onnx.NodeProto) -> str:
    """The op type with its domain when it is not ONNX's own (``nchwc.Conv``, ``microsoft.FusedConv``)."""
    domain = node.domain.removeprefix("com.")
    return f"{domain}.{node.op_type}" if domain and domain != "ai.onnx" else node.op_type


def _ints_attr(node: onnx.NodeProto, name: str) -> list[int]:
    for attr in node.attribute:
        if attr.name == name:
            return [int(v) for v in attr.ints]
    return []


def _int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _prod(values: Iterable[int]) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result

"""Shapes that static inference leaves unknown, observed from one run of ONNX Runtime itself.

ONNX's shape inference, even with data propagation, stops where a shape is computed at run time.
ShuffleNetV2 does that twice per unit: `chunk` exports as Slice (or Split) whose ends come from
``Shape -> Gather -> Add -> Div -> Mul``, and the channel shuffle reshapes to a shape built by
``Shape -> Gather -> Div -> Concat`` (Div is not propagated). Every tensor after the first such
node is then unknown, and so is the cost of every conv that reads one: the emulator refused such
networks. ORT knows each of those shapes once it runs the graph, so the graph being analysed is
run once (CPU provider, one thread, graph optimisations off: an optimised graph is run as saved)
with every still-unknown tensor added as an extra output, on zeros of its declared inputs, and
the concrete shapes land in its value_info, where the analysis reads them like any other.

Only a graph with an unknown tensor is run: the fast path stays a dictionary lookup, and the
caller caches the summary per model hash (``kernels.py``). A shape observed on an NCHWc tensor
is its blocked shape (channels padded to the block), the same as ``complete_shapes`` derives
from the padded weights of an NCHWc Conv. The input is zeros because only shapes are read; a
graph whose shapes depend on its input data gets the shapes of that input, and a graph ORT
cannot run on it (an input with a symbolic dim besides the batch, a shape given as input) is
left as it was, with the reason, so the analysis refuses the node that needs the shape.
"""

from __future__ import annotations

import threading

import numpy as np
import onnx

from adacomp.errors import AdacompError, first_line

# The input types a zero tensor can be made of (strings and the 4-bit types cannot).
_NUMPY_TYPES = {
    code: onnx.helper.tensor_dtype_to_np_dtype(code)
    for code in (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    )
}
_lock = threading.Lock()
_runs = 0


def session_runs() -> int:
    """How many graphs this process has run to observe shapes: what shows that a graph whose
    shapes are all known never pays for a session."""
    with _lock:
        return _runs


def unknown_tensors(graph: onnx.GraphProto) -> list[str]:
    """Outputs of `graph`'s nodes without a fully static recorded shape, in node order.

    A name recorded twice counts as its last record, the one the analysis reads."""
    static: dict[str, bool] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        static[value.name] = _static_shape(value) is not None
    static.update(dict.fromkeys((init.name for init in graph.initializer), True))
    produced = (out for node in graph.node for out in node.output if out)
    return list(dict.fromkeys(name for name in produced if not static.get(name, False)))


def observe_unknown_shapes(proto: onnx.ModelProto) -> int:
    """Record in `proto` (in place) the shape ORT gives every tensor `unknown_tensors` lists.

    `proto`'s inputs must carry the shapes to run (the batch dimension already set). Returns how
    many tensors it recorded (0, and no session, when none was unknown); raises AdacompError
    with ORT's reason, recording nothing, when ORT cannot run the graph."""
    names = unknown_tensors(proto.graph)
    if not names:
        return 0
    observed = _run_for_shapes(proto, names)
    for name, (elem_type, shape) in observed.items():
        _record(proto.graph, name, elem_type, shape)
    return len(observed)


def _run_for_shapes(proto: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Run `proto` once on zeros and return the type and shape of each tensor in `names`."""
    from adacomp.runtime.session import open_session

    global _runs
    feeds = _zero_inputs(proto.graph)
    probe = _with_outputs(proto, names)
    with _lock:
        _runs += 1
    try:
        session = open_session(
            probe.SerializeToString(), threads=1, optimization="none", quiet=True, config={}, spin=False
        )
        arrays = session.run(names, feeds)
    except Exception as exc:  # ORT raises its own exception types; one line either way
        raise AdacompError(f"onnxruntime cannot run the graph to observe it: {first_line(exc)}") from None
    return {
        name: (onnx.helper.np_dtype_to_tensor_dtype(array.dtype), tuple(int(d) for d in array.shape))
        for name, array in zip(names, arrays, strict=True)
    }


def _zero_inputs(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Zeros of each runtime input's declared type and shape; refuses a dim it would have to invent."""
    initializers = {init.name for init in graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for value in graph.input:
        if value.name in initializers:  # an input with a default: ORT uses the initializer
            continue
        shape = _static_shape(value)
        dtype = _NUMPY_TYPES.get(value.type.tensor_type.elem_type)
        if shape is None or dtype is None:
            raise AdacompError(
                f"onnxruntime cannot run the graph to observe it: input {value.name!r} is not a "
                "tensor of a numeric type and a static shape besides the batch dimension"
            )
        feeds[value.name] = np.zeros(shape, dtype=dtype)
    return feeds


def _with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `proto` that also outputs `names`, without value_info (ORT infers its own, and a
    shape recorded by a rule here must not contradict it)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.value_info[:]
    outputs = {value.name for value in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in outputs)
    return probe


def _record(graph: onnx.GraphProto, name: str, elem_type: int, shape: tuple[int, ...]) -> None:
    """Make (elem_type, shape) the one record of `name`: a graph output's own, else its value_info."""
    observed = onnx.helper.make_tensor_value_info(name, elem_type, list(shape))
    for output in graph.output:
        if output.name == name:
            output.type.CopyFrom(observed.type)
            return
    stale = [value for value in graph.value_info if value.name == name]
    for value in stale:
        graph.value_info.remove(value)
    graph.value_info.append(observed)


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor = value.type.tensor_type
    dims = tensor.shape.dim
    if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)

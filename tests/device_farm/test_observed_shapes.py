"""Shapes only a run reveals (ShuffleNetV2's split and channel shuffle) come from ONNX Runtime itself."""

from __future__ import annotations

import math

import onnx
import pytest

from adacomp.device_farm.cost_model import predict
from adacomp.device_farm.devices.emulated import EmulatedDevice
from adacomp.device_farm.graph import GraphSummary, OpCost, OpKind, with_batch_size
from adacomp.device_farm.kernels import clear_cache, runtime_summary
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.observed_shapes import observe_unknown_shapes, session_runs, unknown_tensors
from adacomp.device_farm.profiles import KernelGraph, builtin_profile_names, load_profile
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError
from adacomp.search_spaces.facts import count_macs
from tests.helpers.onnx_exports import computed_slice_conv, data_dependent_conv, exported
from tests.helpers.shuffle_models import tiny_shufflenet, tiny_shufflenet_onnx

# Units 1 and 2 of the tiny ShuffleNet split 24 channels into 12 + 12 and run the right half
# through a 1x1 conv, a 3x3 depthwise conv and a 1x1 conv over a 4x4 map (32 -> stem /2 -> pool
# /2 -> the down-sampling unit /2), so per image:
POINTWISE_MACS = 12 * 12 * 4 * 4  # out channels x in channels x positions
DEPTHWISE_MACS = 12 * 3 * 3 * 4 * 4  # one 3x3 filter per channel
GRAPHS: tuple[KernelGraph, ...] = ("extended", "all", "replay")


def _shufflenet(precision: str | None = None) -> OnnxModel:
    return OnnxModel(tiny_shufflenet_onnx(precision), f"shufflenet-{precision or 'fp32'}.onnx")


def _branch_convs(summary: GraphSummary, unit: int) -> list[OpCost]:
    """The convs of a unit's right branch, in graph order (named after the exported nodes)."""
    prefix = f"/stage/stage.{unit}/right/"
    return [op for op in summary.executed if op.name.startswith(prefix) and op.geometry is not None]


@pytest.mark.parametrize("precision", [None, "int8", "fp16"])
@pytest.mark.parametrize("profile", builtin_profile_names())
def test_every_builtin_profile_prices_the_shufflenet(profile: str, precision: str | None) -> None:
    measurement = EmulatedDevice(profile, profile).measure(_shufflenet(precision), MeasureSettings())
    assert measurement.source == "emulated"
    assert math.isfinite(measurement.latency.median_ms) and measurement.latency.median_ms > 0
    assert measurement.energy_mj is not None and measurement.energy_mj > 0
    assert measurement.peak_memory_mb is not None and measurement.peak_memory_mb > 0


@pytest.mark.parametrize(("precision", "graph"), [(None, "extended"), (None, "replay"), ("int8", "extended")])
def test_branch_convs_are_priced_with_the_shapes_a_run_reveals(
    precision: str | None, graph: KernelGraph
) -> None:
    summary = runtime_summary(_shufflenet(precision), graph)
    for unit in (1, 2):
        pointwise, depthwise, last = _branch_convs(summary, unit)
        assert [op.kind for op in (pointwise, depthwise, last)] == [
            OpKind.CONV,
            OpKind.DEPTHWISE_CONV,
            OpKind.CONV,
        ]
        assert [op.macs for op in (pointwise, depthwise, last)] == [
            POINTWISE_MACS,
            DEPTHWISE_MACS,
            POINTWISE_MACS,
        ]
        geometry = depthwise.geometry
        assert geometry is not None
        assert (geometry.in_channels, geometry.out_channels, geometry.groups) == (12, 12, 12)
        assert (geometry.kernel_area, geometry.stride, geometry.out_pixels) == (9, 1, 16)
        assert {op.dtype for op in (pointwise, depthwise, last)} == {"int8" if precision else "fp32"}
    assert summary.macs == count_macs(*tiny_shufflenet())
    # Every tensor has its size: no kernel is priced as writing nothing.
    assert all(op.activation_bytes_out > 0 for op in summary.executed)


def test_fp16_shufflenet_is_priced_in_fp16_on_a_device_with_fp16_kernels() -> None:
    summary = runtime_summary(_shufflenet("fp16"), "replay")
    convs = _branch_convs(summary, 1)
    assert [(op.dtype, op.macs) for op in convs] == [
        ("fp16", POINTWISE_MACS),
        ("fp16", DEPTHWISE_MACS),
        ("fp16", POINTWISE_MACS),
    ]
    # A 12-channel 4x4 map in fp16 is read by the first conv.
    assert convs[0].activation_bytes_in == 12 * 4 * 4 * 2


def test_the_nchwc_graph_is_priced_with_its_padded_channels() -> None:
    summary = runtime_summary(_shufflenet(), "all")
    if not any(op.op_type.startswith("microsoft.nchwc.") for op in summary.executed):
        pytest.skip("this CPU's onnxruntime has no NCHWc kernels (not x86 with AVX2)")
    # NCHWc pads 12 channels to a whole block: more MACs than the network, never fewer.
    assert summary.macs >= count_macs(*tiny_shufflenet())
    assert all(op.activation_bytes_out > 0 for op in summary.executed)


def test_observed_shapes_follow_the_batch_size() -> None:
    one = runtime_summary(_shufflenet(), "extended", batch_size=1)
    three = runtime_summary(_shufflenet(), "extended", batch_size=3)
    assert three.macs == 3 * one.macs
    pointwise = _branch_convs(three, 2)[0]
    assert pointwise.macs == 3 * POINTWISE_MACS
    assert pointwise.activation_bytes_in == 3 * 12 * 4 * 4 * 4
    assert pointwise.geometry is not None and pointwise.geometry.out_pixels == 16


def test_split_concat_and_shuffle_are_priced_as_memory_bound_data_movement() -> None:
    summary = runtime_summary(_shufflenet(), "extended")
    unit = [op for op in summary.executed if op.name.startswith("/stage/stage.1/")]
    moves = [op for op in unit if op.op_type in ("Split", "Slice", "Concat", "Reshape", "Transpose")]
    assert {op.op_type for op in moves} >= {"Concat", "Reshape", "Transpose"}
    assert {op.op_type for op in moves} & {"Split", "Slice"}
    assert all(op.kind is OpKind.RESHAPE and op.macs == 0 for op in moves)
    transpose = next(op for op in moves if op.op_type == "Transpose")
    assert transpose.activation_bytes_in == transpose.activation_bytes_out == 24 * 4 * 4 * 4
    times = {op.name: op for op in predict(summary, load_profile("pixel4")).ops}
    for op in moves:
        assert times[op.name].compute_ms == 0 and times[op.name].memory_ms > 0


def test_only_a_graph_with_unknown_shapes_is_run() -> None:
    clear_cache()
    before = session_runs()
    for name in ("cnn", "cnn:int8", "cnn:fp16", "mlp"):
        for graph in GRAPHS:
            runtime_summary(OnnxModel(exported(name), f"{name}.onnx"), graph)
    assert session_runs() == before
    runtime_summary(_shufflenet(), "extended")
    assert session_runs() == before + 1
    runtime_summary(_shufflenet(), "extended")  # cached per model hash
    assert session_runs() == before + 1


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("graph", ["extended", "replay"])
def test_a_graph_with_two_inputs_and_a_symbolic_batch_is_run_at_the_batch_size(
    graph: KernelGraph, batch_size: int
) -> None:
    model = OnnxModel(computed_slice_conv().SerializeToString(), "two_inputs.onnx")
    conv = next(op for op in runtime_summary(model, graph, batch_size).executed if op.name == "conv0")
    assert conv.macs == batch_size * 4 * 8 * 8 * 2 * 3 * 3
    assert conv.activation_bytes_in == batch_size * 2 * 8 * 8 * 4


def test_a_graph_onnxruntime_cannot_run_is_refused_naming_the_node_and_why() -> None:
    model = OnnxModel(data_dependent_conv().SerializeToString(), "dynamic.onnx")
    with pytest.raises(AdacompError, match=r"conv0.*onnxruntime cannot run the graph") as error:
        runtime_summary(model, "extended")
    assert "\n" not in str(error.value)


def test_an_input_dimension_besides_the_batch_is_never_invented() -> None:
    proto = computed_slice_conv()
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    proto = with_batch_size(proto, 1)
    before = session_runs()
    with pytest.raises(AdacompError, match="'x' is not a tensor of a numeric type and a static shape"):
        observe_unknown_shapes(proto)
    assert session_runs() == before
    assert unknown_tensors(proto.graph)  # nothing recorded


def test_observed_shapes_are_recorded_once_where_the_analysis_reads_them() -> None:
    proto = computed_slice_conv()
    proto.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "height"  # an output left unknown
    proto.graph.value_info.append(onnx.helper.make_tensor_value_info("first", onnx.TensorProto.FLOAT, None))
    proto = with_batch_size(proto, 2)
    assert unknown_tensors(proto.graph) == ["shape", "channels", "half", "first", "sum", "out"]
    assert observe_unknown_shapes(proto) == 6
    assert unknown_tensors(proto.graph) == []
    names = [value.name for value in proto.graph.value_info]
    assert sorted(names) == ["channels", "first", "half", "shape", "sum"]  # the stale record replaced
    out = proto.graph.output[0].type.tensor_type  # a graph output keeps its one record
    assert [d.dim_value for d in out.shape.dim] == [2, 4, 8, 8] and out.elem_type == onnx.TensorProto.FLOAT

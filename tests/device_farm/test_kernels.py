"""Kernel detection: what is priced is exactly the graph ONNX Runtime runs, fp32 and QDQ int8 alike."""

from __future__ import annotations

from collections import Counter

import onnx
import onnxruntime as ort
import pytest

from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.graph import OpKind
from adacomp.device_farm.kernels import runtime_graph, runtime_summary
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings
from tests.helpers.onnx_exports import exported, summary


def _optimized_nodes(data: bytes, level: str) -> list[onnx.NodeProto]:
    """The nodes ORT itself saves as its optimised graph (asked directly, not through adacomp)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "o.onnx")
        ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return list(onnx.load(str(Path(tmp) / "o.onnx")).graph.node)


@pytest.mark.parametrize("name", ["cnn", "cnn:int8", "cnn:depthwise", "mlp"])
@pytest.mark.parametrize("level", ["extended", "all"])
def test_the_priced_kernels_are_the_nodes_onnxruntime_runs(name: str, level: str) -> None:
    model = OnnxModel(exported(name), f"{name}.onnx")
    kernels = runtime_summary(model, level).executed  # type: ignore[arg-type]
    nodes = _optimized_nodes(model.data, level)
    assert [k.name for k in kernels] == [n.name for n in nodes]
    assert all(k.op_type.endswith(n.op_type) for k, n in zip(kernels, nodes, strict=True))
    # The MACs of the network do not change with fusion or layout.
    assert runtime_summary(model, level).macs == summary(name).macs  # type: ignore[arg-type]


def test_qdq_groups_become_int8_kernels_and_their_q_dq_nodes_disappear() -> None:
    model = OnnxModel(exported("cnn:int8"), "int8.onnx")
    kernels = runtime_summary(model, "extended").executed
    convs = [k for k in kernels if k.kind is OpKind.CONV]
    assert [k.op_type for k in convs] == ["QLinearConv", "QLinearConv"]
    assert all(k.dtype == "int8" for k in convs)
    gemm = [k for k in kernels if k.kind is OpKind.GEMM]
    assert [k.op_type for k in gemm] == ["microsoft.QGemm"] and gemm[0].dtype == "int8"
    # Only the graph's entry quantize and exit dequantize stay (plus around the float pooling).
    quantize = Counter(k.op_type for k in kernels if k.kind is OpKind.QUANTIZE)
    assert sum(quantize.values()) <= 4
    # An int8 conv reads one byte per weight and activation.
    first = convs[0]
    assert first.geometry is not None
    assert (
        first.weight_bytes
        >= first.geometry.out_channels * first.geometry.in_channels * first.geometry.kernel_area
    )
    assert (
        first.weight_bytes
        < 2 * first.geometry.out_channels * first.geometry.in_channels * first.geometry.kernel_area + 64
    )


def test_fp32_conv_batchnorm_relu_is_one_kernel_with_its_geometry() -> None:
    model = OnnxModel(exported("cnn"), "cnn.onnx")
    kernels = runtime_summary(model, "extended").executed
    convs = [k for k in kernels if k.kind is OpKind.CONV]
    assert [k.op_type for k in convs] == ["microsoft.FusedConv", "microsoft.FusedConv"]
    assert not any(k.op_type in ("BatchNormalization", "Relu") for k in kernels)
    geometry = convs[1].geometry
    assert geometry is not None
    assert (geometry.in_channels, geometry.out_channels, geometry.kernel_area, geometry.stride) == (
        16,
        32,
        9,
        1,
    )
    assert geometry.out_pixels == 16 * 16


def test_nchwc_layout_on_this_cpu_is_priced_with_its_reorders() -> None:
    model = OnnxModel(exported("cnn32"), "cnn32.onnx")
    kernels = runtime_summary(model, "all").executed
    ops = Counter(k.op_type for k in kernels)
    if not any(op.startswith("microsoft.nchwc.") for op in ops):
        pytest.skip("this CPU's onnxruntime has no NCHWc kernels (not x86 with AVX2)")
    assert ops["microsoft.nchwc.ReorderOutput"] >= 1
    assert all(k.activation_bytes_out > 0 for k in kernels)


def test_kernel_names_match_onnxruntimes_profiler_on_this_host() -> None:
    """The per-kernel times calibration fits on are keyed by the same names the emulator prices."""
    model = OnnxModel(exported("cnn:int8"), "int8.onnx")
    settings = MeasureSettings(warmup_runs=2, min_runs=5, max_runs=20, target_cv=0.5)
    measurement, low_ms, kernel_ms = HostDevice().measure_kernels(model, settings)
    names = {k.name for k in runtime_summary(model, "all").executed}
    assert set(kernel_ms) == names
    assert all(ms > 0 for ms in kernel_ms.values())
    assert 0 < low_ms <= measurement.latency.median_ms <= measurement.latency.p90_ms


def test_graph_analysis_is_cached_per_model_hash() -> None:
    model = OnnxModel(exported("cnn"), "cnn.onnx")
    first = runtime_summary(model, "extended")
    again = runtime_summary(OnnxModel(exported("cnn"), "renamed.onnx"), "extended")
    assert again is first


def test_a_model_onnxruntime_refuses_is_one_line() -> None:
    from adacomp.errors import AdacompError

    broken = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("NoSuchOp", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    with pytest.raises(AdacompError, match="onnxruntime cannot optimise the model") as error:
        runtime_graph(broken.SerializeToString(), "extended")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("level", ["extended", "all"])
def test_int8_kernels_write_one_byte_per_value_in_either_layout(level: str) -> None:
    """At level all ORT runs QLinearConv channels-last; its output is uint8 like its zero point
    (not int32 like its bias, the node's last input)."""
    kernels = runtime_summary(OnnxModel(exported("cnn:int8"), "int8.onnx"), level).executed  # type: ignore[arg-type]
    convs = [k for k in kernels if k.kind is OpKind.CONV]
    assert [k.activation_bytes_out for k in convs] == [16 * 16 * 16, 32 * 16 * 16]
    pool = next(k for k in kernels if k.op_type.endswith("QLinearGlobalAveragePool"))
    assert pool.activation_bytes_out == 32

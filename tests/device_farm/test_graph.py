"""The graph analyzer on real ONNX exports: MACs as torch counts them, int8/fp16/depthwise recognised."""

from __future__ import annotations

import onnx
import pytest

from adacomp.device_farm.graph import GraphSummary, OpKind, analyze
from adacomp.errors import AdacompError
from adacomp.search_spaces.facts import count_macs
from tests.helpers.onnx_exports import data_dependent_conv, exported, summary, torch_model


def _weighted(s: GraphSummary) -> list[str]:
    return [op.dtype for op in s.executed if op.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.GEMM)]


@pytest.mark.parametrize("name", ["cnn", "mlp", "cnn:depthwise", "cnn:pruned"])
def test_macs_equal_torch_count(name: str) -> None:
    model, example = torch_model(name)
    assert summary(name).macs == count_macs(model, example)


def test_macs_scale_with_batch() -> None:
    assert summary("cnn", 4).macs == 4 * summary("cnn").macs
    assert summary("cnn", 4).peak_activation_bytes == 4 * summary("cnn").peak_activation_bytes


def test_fp32_graph_is_all_fp32_with_stored_weight_bytes() -> None:
    s = summary("cnn")
    assert set(_weighted(s)) == {"fp32"}
    model, _ = torch_model("cnn")
    # BatchNorm is folded into the conv by the exporter; everything else is stored as fp32.
    parameters = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("1."))
    assert abs(s.weight_bytes - 4 * parameters) <= 64  # plus the shape/axes constants
    assert s.sparsity == 0.0


def test_conv_activation_is_fused_into_the_conv() -> None:
    ops = summary("cnn").ops
    relus = [op for op in ops if op.op_type == "Relu"]
    assert relus
    assert all(op.fused for op in relus)  # ORT's ConvActivationFusion


def test_qdq_conv_and_gemm_are_int8_ops() -> None:
    s = summary("cnn:int8")
    assert _weighted(s) == ["int8", "int8", "int8"]
    # Weight DQs are folded and the Q/DQ pairs around the fused convs cost nothing; only the
    # input's quantization and a few boundaries stay as real work.
    fused = [op for op in s.ops if op.kind is OpKind.QUANTIZE and op.fused]
    real = [op for op in s.ops if op.kind is OpKind.QUANTIZE and not op.fused]
    assert len(fused) > len(real) >= 1
    # int8 weights are stored at one byte each: a quarter of fp32 plus scales and int32 biases.
    assert s.weight_bytes < 0.4 * summary("cnn").weight_bytes
    conv = next(op for op in s.executed if op.kind is OpKind.CONV)
    fp32_conv = next(op for op in summary("cnn").executed if op.kind is OpKind.CONV)
    assert conv.macs == fp32_conv.macs
    assert conv.activation_bytes_in * 4 == fp32_conv.activation_bytes_in  # reads the uint8 tensor


def test_int8_weights_are_folded_and_priced_as_the_float_model() -> None:
    """Weight-only int8: the DequantizeLinear behind each weight is folded when the session is
    created (the artifact asks ORT to), so the ops run in float and read float weights."""
    s, float_summary = summary("cnn:int8_weights"), summary("cnn")
    assert _weighted(s) == ["fp32", "fp32", "fp32"]
    dequantize = [op for op in s.ops if op.op_type == "DequantizeLinear"]
    assert len(dequantize) == 3 and all(op.fused for op in dequantize)
    assert [op.macs for op in s.executed] == [op.macs for op in float_summary.executed]
    assert abs(s.weight_bytes - float_summary.weight_bytes) <= 64


def test_fp16_ops_are_fp16() -> None:
    s = summary("cnn:fp16")
    assert set(_weighted(s)) == {"fp16"}
    assert s.weight_bytes < 0.55 * summary("cnn").weight_bytes
    assert s.macs == summary("cnn").macs


def test_depthwise_conv_is_recognised() -> None:
    kinds = [op.kind for op in summary("cnn:depthwise").executed]
    assert OpKind.DEPTHWISE_CONV in kinds
    assert OpKind.DEPTHWISE_CONV not in [op.kind for op in summary("cnn").executed]
    dw = next(op for op in summary("cnn:depthwise").executed if op.kind is OpKind.DEPTHWISE_CONV)
    assert dw.macs == 16 * 16 * 16 * 9  # one 3x3 filter per channel over a 16x16 map


def test_sparsity_is_reported_but_costs_are_unchanged() -> None:
    dense, pruned = summary("cnn"), summary("cnn:pruned")
    assert pruned.sparsity == pytest.approx(0.8, abs=0.05)
    assert pruned.macs == dense.macs
    assert [(op.kind, op.macs, op.bytes_moved) for op in pruned.ops] == [
        (op.kind, op.macs, op.bytes_moved) for op in dense.ops
    ]


def test_peak_activation_is_between_largest_tensor_and_sum() -> None:
    s = summary("cnn")
    largest = max(max(op.activation_bytes_in, op.activation_bytes_out) for op in s.executed)
    total = sum(op.activation_bytes_out for op in s.executed) + s.executed[0].activation_bytes_in
    assert largest <= s.peak_activation_bytes <= total
    # conv1 reads the 16-channel map while writing the 32-channel one: both are alive at once.
    assert s.peak_activation_bytes >= (16 + 32) * 16 * 16 * 4


def test_summary_is_frozen() -> None:
    s = summary("mlp")
    with pytest.raises(AttributeError):
        s.macs = 0  # type: ignore[misc]


def test_unpriceable_node_is_refused_by_name() -> None:
    with pytest.raises(AdacompError, match="conv0"):
        analyze(data_dependent_conv())


def test_bad_batch_size_is_refused() -> None:
    with pytest.raises(AdacompError, match="batch_size"):
        analyze(onnx.load_from_string(exported("mlp")), batch_size=0)

"""ONNX export: checker-valid, onnxruntime outputs match torch, quantization is what ships."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.runtime.session import declared_session_config, open_session
from adacomp.search_spaces import CompressionPlan, Step, compress, export_onnx, model_facts
from tests.helpers.compression_plans import MIXED


def _run(onnx_bytes: bytes, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _initializer_bytes(onnx_bytes: bytes) -> int:
    model = onnx.load_from_string(onnx_bytes)
    return sum(len(init.raw_data) for init in model.graph.initializer)


def _calibration(x: torch.Tensor) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(5)
    return [torch.randn(16, *x.shape[1:], generator=generator).numpy() for _ in range(4)]


def test_float_export_matches_torch_with_dynamic_batch(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    exported = export_onnx(cnn, cnn_input)
    onnx.checker.check_model(onnx.load_from_string(exported))
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        np.testing.assert_allclose(_run(exported, x), cnn(x).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_compressed_export_matches_torch(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan(
        tuple((n, tuple(s for s in steps if s.technique != "quantize")) for n, steps in MIXED)
    )
    compressed = compress(cnn, plan, cnn_input)
    exported = export_onnx(compressed, cnn_input, plan=plan)
    np.testing.assert_allclose(
        _run(exported, cnn_input), compressed(cnn_input).detach().numpy(), atol=1e-4, rtol=1e-4
    )


def test_int8_export_is_qdq_close_to_float_and_four_times_smaller(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    layers = ["features.conv1", "features.conv2", "features.conv3", "fc1", "fc2"]
    plan = CompressionPlan.from_mapping({n: [Step.of("quantize", precision="int8")] for n in layers})
    compressed = compress(cnn, plan, cnn_input)
    exported = export_onnx(compressed, cnn_input, plan=plan, calibration=_calibration(cnn_input))
    ops = {node.op_type for node in onnx.load_from_string(exported).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    reference = cnn(cnn_input).detach().numpy()
    out = _run(exported, cnn_input)
    assert np.abs(out - reference).max() < 0.1 * np.abs(reference).max()
    float_bytes = _initializer_bytes(export_onnx(cnn, cnn_input))
    assert _initializer_bytes(exported) < float_bytes / 3
    # the storage model agrees with what the artifact really holds (within 15 %)
    predicted = model_facts(compressed, cnn_input, plan).storage_bytes
    assert abs(predicted - _initializer_bytes(exported)) / _initializer_bytes(exported) < 0.15


def _optimised_ops(onnx_bytes: bytes, tmp_path: Path, entries: dict[str, str]) -> list[str]:
    """The op types onnxruntime is left with after its graph optimisation, with `entries`."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(tmp_path / "optimised.onnx").graph.node]


def test_int8_weights_store_int8_compute_float_and_match_torch(
    cnn: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    layers = ["features.conv1", "features.conv2", "features.conv3", "fc1", "fc2"]
    plan = CompressionPlan.from_mapping({n: [Step.of("quantize", precision="int8_weights")] for n in layers})
    compressed = compress(cnn, plan, cnn_input)
    exported = export_onnx(compressed, cnn_input, plan=plan)  # checker-valid; no calibration needed
    model = onnx.load_from_string(exported)
    dequantized = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dequantized) == len(layers)
    assert "QuantizeLinear" not in {n.op_type for n in model.graph.node}  # activations stay float
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert {n.input[0] for n in dequantized} == int8
    # per-channel weights in 8 bits: within 1 % of torch's output, a quarter of the storage
    reference = cnn(cnn_input).detach().numpy()
    out = open_session(exported).run(None, {"input": cnn_input.numpy()})[0]
    assert np.abs(out - reference).max() < 0.01 * np.abs(reference).max()
    float_bytes = _initializer_bytes(export_onnx(cnn, cnn_input))
    assert _initializer_bytes(exported) < float_bytes / 3
    predicted = model_facts(compressed, cnn_input, plan).storage_bytes
    assert abs(predicted - _initializer_bytes(exported)) / _initializer_bytes(exported) < 0.15
    # The artifact declares what makes it fast: with it, onnxruntime folds every weight's
    # DequantizeLinear at load time; without it, they stay in the graph and run on every call.
    declared = declared_session_config(exported)
    assert declared == {"session.disable_quant_qdq": "1"}
    assert "DequantizeLinear" not in _optimised_ops(exported, tmp_path, declared)
    assert "DequantizeLinear" in _optimised_ops(exported, tmp_path, {})


def test_int8_weights_on_one_layer_leave_the_others_float(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("quantize", precision="int8_weights")]})
    model = onnx.load_from_string(export_onnx(cnn, cnn_input, plan=plan))
    int8 = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8 == ["fc1.weight.int8"]


def test_int8_weights_keep_pruned_channels_exactly_zero() -> None:
    layer = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    with torch.no_grad():
        layer[0].weight[1].zero_()  # a pruned output channel: its scale must not be zero
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    plan = CompressionPlan.from_mapping({"0": [Step.of("quantize", precision="int8_weights")]})
    exported = export_onnx(layer, x, plan=plan)
    out = open_session(exported).run(None, {"input": x.numpy()})[0]
    bias = layer[0].bias.detach().numpy()[1]
    np.testing.assert_allclose(out[:, 1], bias, atol=1e-6)
    np.testing.assert_allclose(out, layer(x).detach().numpy(), atol=0.02)


def test_int8_per_tensor_uses_one_scale_per_weight(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("quantize", precision="int8_per_tensor")]})
    exported = export_onnx(
        compress(cnn, plan, cnn_input), cnn_input, plan=plan, calibration=_calibration(cnn_input)
    )
    scales = {
        i.name: onnx.numpy_helper.to_array(i) for i in onnx.load_from_string(exported).graph.initializer
    }
    assert scales["fc1.weight_scale"].size == 1


def test_int8_on_one_layer_leaves_the_others_float(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("quantize", precision="int8")]})
    exported = export_onnx(
        compress(cnn, plan, cnn_input), cnn_input, plan=plan, calibration=_calibration(cnn_input)
    )
    quantized = {
        i.name
        for i in onnx.load_from_string(exported).graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    }
    assert quantized == {"fc1.weight_quantized"} or all(name.startswith("fc1.") for name in quantized)


def test_fp16_export_halves_weights_and_keeps_float32_io(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    layers = ["features.conv1", "features.conv2", "features.conv3", "fc1", "fc2"]
    plan = CompressionPlan.from_mapping({n: [Step.of("quantize", precision="fp16")] for n in layers})
    exported = export_onnx(compress(cnn, plan, cnn_input), cnn_input, plan=plan)
    onnx.checker.check_model(onnx.load_from_string(exported))
    np.testing.assert_allclose(
        _run(exported, cnn_input), cnn(cnn_input).detach().numpy(), atol=1e-2, rtol=1e-2
    )
    assert _initializer_bytes(exported) < 0.55 * _initializer_bytes(export_onnx(cnn, cnn_input))


def test_fp16_on_some_layers_still_runs(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("quantize", precision="fp16")]})
    exported = export_onnx(compress(cnn, plan, cnn_input), cnn_input, plan=plan)
    np.testing.assert_allclose(
        _run(exported, cnn_input), cnn(cnn_input).detach().numpy(), atol=1e-2, rtol=1e-2
    )


def test_int8_without_calibration_is_refused(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("quantize", precision="int8")]})
    with pytest.raises(AdacompError, match="calibration"):
        export_onnx(compress(cnn, plan, cnn_input), cnn_input, plan=plan)


def test_pruned_zeros_reach_the_artifact(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("magnitude_prune", sparsity=0.8)]})
    exported = export_onnx(compress(cnn, plan, cnn_input), cnn_input, plan=plan)
    weights = {
        i.name: onnx.numpy_helper.to_array(i) for i in onnx.load_from_string(exported).graph.initializer
    }
    assert np.mean(weights["fc1.weight"] == 0) == pytest.approx(0.8, abs=0.01)


def _run_unoptimised(onnx_bytes: bytes, x: torch.Tensor) -> np.ndarray:
    """The QDQ graph's exact arithmetic: dequantize, float op, quantize; no fused int8 kernel."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_int8_kernels_compute_what_the_qdq_graph_says(kind: str) -> None:
    """Full-range int8 weights against large activations: where onnxruntime's fused u8s8 kernels
    add products in int16 (x86 without VNNI) they saturate unless weights keep to 7 bits, and the
    artifact would score differently there than on a VNNI CPU or a phone. On any CPU the fused
    kernels must agree with the graph's own QDQ arithmetic."""
    torch.manual_seed(0)
    model: nn.Module = (
        nn.Sequential(nn.Conv2d(8, 4, 3), nn.Flatten()) if kind == "conv" else nn.Sequential(nn.Linear(64, 4))
    )
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)  # every weight quantizes to the top of its range
    shape = (8, 6, 6) if kind == "conv" else (64,)
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(16, *shape, generator=generator) + 1.0  # positive: activations near the top too
    layer = "0"
    plan = CompressionPlan.from_mapping({layer: [Step.of("quantize", precision="int8")]})
    exported = export_onnx(model.eval(), x[:2], plan=plan, calibration=[x.numpy()])
    fused, reference = _run(exported, x), _run_unoptimised(exported, x)
    np.testing.assert_allclose(fused, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


def test_dynamo_exports_share_one_torchlib_table_and_stay_identical(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    """The dynamo exporter (the fallback where a trace will not do) builds its aten -> ONNX table
    once per process: later exports are byte-identical to one made with torch's own per-export
    table, and torch's hook is restored."""
    from torch.onnx._internal.exporter import _registration

    from adacomp.search_spaces import export

    hook = vars(_registration.ONNXRegistry)["from_torchlib"]
    model = cnn.eval()
    shared = export._dynamo_exported(model, cnn_input).SerializeToString()
    assert export._TORCHLIB_REGISTRIES, "the table was not kept"
    assert vars(_registration.ONNXRegistry)["from_torchlib"] is hook
    assert export._dynamo_exported(model, cnn_input).SerializeToString() == shared
    export._TORCHLIB_REGISTRIES.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "_torchlib_registry_built_once", contextlib.nullcontext)
        assert export._dynamo_exported(model, cnn_input).SerializeToString() == shared


class _ConvBnBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class _Shared(nn.Module):
    """BatchNorm after every conv (the trace folds it in and names the result itself), a block
    called twice, and a head reading a flattened map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _ConvBnBlock()
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.body(self.stem(x)))
        return self.head(y.flatten(1))


def _randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding changes every weight."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_the_traced_export_names_folded_weights_after_their_layers_and_matches_torch() -> None:
    """The fast path: BatchNorm folded into its conv, the folded weights named after the conv
    (what quantization goes by), a layer called twice quantizable by its one name, outputs as
    torch's at batch sizes the trace never saw."""
    from adacomp.search_spaces import export

    model = _randomised(_Shared())
    x = torch.randn(2, 3, 6, 6)
    traced = export._traced(model, x)
    assert traced is not None, "the trace was refused"
    names = {init.name for init in traced.graph.initializer}
    assert {"stem.conv.weight", "stem.conv.bias", "head.weight", "body.0.weight"} <= names
    assert not [name for name in names if name.startswith("onnx::")]
    assert not [node for node in traced.graph.node if node.op_type in ("BatchNormalization", "Identity")]
    shipped = export_onnx(
        model,
        x,
        plan=CompressionPlan.from_mapping({"body.0": [Step.of("quantize", precision="int8_weights")]}),
    )
    assert [i for i in onnx.load_from_string(shipped).graph.initializer if i.name.startswith("body.0.weight")]
    for batch in (1, 3, 7):
        sample = torch.randn(batch, 3, 6, 6)
        np.testing.assert_allclose(
            _run(traced.SerializeToString(), sample), model(sample).detach().numpy(), rtol=1e-4, atol=1e-4
        )


class _EqualWeights(nn.Module):
    """Two convs with equal weights (a constant initialisation), which an exporter stores once."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 3, 1)
        self.second = nn.Conv2d(3, 3, 1)
        for conv in (self.first, self.second):
            nn.init.constant_(conv.weight, 0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def test_each_of_two_layers_with_equal_weights_owns_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal tensors are stored once by the trace; each layer gets its own weights back, so the
    second layer alone can be quantized."""
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", "0")
    model = _EqualWeights().eval()
    x = torch.randn(2, 3, 4, 4)
    plan = CompressionPlan.from_mapping({"second": [Step.of("quantize", precision="int8_weights")]})
    shipped = onnx.load_from_string(export_onnx(model, x, plan=plan))
    names = {init.name for init in shipped.graph.initializer}
    assert {"first.weight", "second.weight.int8"} <= names
    assert "second.weight" not in names


class _BatchDependent(nn.Module):
    """A forward whose trace is wrong at any other batch size (a Python int of the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = int(x.shape[0])
        return self.fc(x) * torch.arange(count, dtype=x.dtype).reshape(count, 1)


class _Untraceable(nn.Module):
    """A forward with an op the TorchScript exporter has no ONNX form for, the dynamo one has."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(self.fc(x), 1)


@pytest.mark.parametrize(("model_type", "batches"), [(_BatchDependent, (2,)), (_Untraceable, (1, 2, 3))])
def test_a_model_the_trace_gets_wrong_is_exported_by_dynamo(
    model_type: type[nn.Module], batches: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trace follows the one path its sample took: where its graph would answer otherwise than
    the model at another batch size, or tracing fails, the dynamo exporter's graph ships (which
    fixes a batch size a forward reads as a Python int: torch.export's own guard)."""
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", "0")
    from adacomp.search_spaces import export

    torch.manual_seed(0)
    model = model_type().eval()
    x = torch.randn(2, 4)
    used: list[str] = []
    original = export._dynamo_exported
    monkeypatch.setattr(export, "_dynamo_exported", lambda m, e: used.append("dynamo") or original(m, e))
    shipped = export_onnx(model, x)
    assert used == ["dynamo"]
    for batch in batches:
        sample = torch.randn(batch, 4)
        np.testing.assert_allclose(
            _run(shipped, sample), model(sample).detach().numpy(), rtol=1e-5, atol=1e-5
        )


def _between_quantized(graph: onnx.GraphProto, op_type: str) -> list[bool]:
    """For each `op_type` node: does it read DequantizeLinear outputs and feed QuantizeLinear?"""
    producer = {out: node.op_type for node in graph.node for out in node.output}
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    return [
        all(producer.get(name) == "DequantizeLinear" for name in node.input if name in producer)
        and all(reader == "QuantizeLinear" for out in node.output for reader in readers.get(out, []))
        for node in graph.node
        if node.op_type == op_type
    ]


def test_int8_keeps_activations_int8_between_quantized_layers(residual_net: nn.Module) -> None:
    """With every layer int8, the residual Add runs on int8 (QDQ on both sides, so onnxruntime
    fuses it into its int8 kernel) and the artifact still matches torch."""
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    layers = ["stem", "block.conv", "head", "fc"]
    plan = CompressionPlan.from_mapping({n: [Step.of("quantize", precision="int8")] for n in layers})
    exported = export_onnx(residual_net, x, plan=plan, calibration=_calibration(x))
    graph = onnx.load_from_string(exported).graph
    assert _between_quantized(graph, "Add") == [True]
    reference = residual_net(x).detach().numpy()
    assert np.abs(_run(exported, x) - reference).max() < 0.1 * np.abs(reference).max()


def test_int8_on_some_layers_adds_no_pairs_where_a_float_layer_is_reached(residual_net: nn.Module) -> None:
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    plan = CompressionPlan.from_mapping({"block.conv": [Step.of("quantize", precision="int8")]})
    exported = export_onnx(residual_net, x, plan=plan, calibration=_calibration(x))
    graph = onnx.load_from_string(exported).graph
    assert _between_quantized(graph, "Add") == [False]  # it reads the float stem's output
    quantize_nodes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize_nodes) <= 2  # the conv's input and output, nothing more


def test_the_shipped_graph_carries_no_per_node_exporter_notes(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    """torch's exporter annotates every node with its module path, class and source stack:
    bytes a device downloads and never reads. They are dropped; names quantization goes by
    (initializers) and the outputs stay."""
    shipped = onnx.load_from_string(export_onnx(cnn, cnn_input, plan=None))
    assert all(not node.metadata_props and not node.doc_string for node in shipped.graph.node)
    assert {"fc1.weight", "features.conv1.weight"} <= {i.name for i in shipped.graph.initializer}
    np.testing.assert_allclose(
        _run(shipped.SerializeToString(), cnn_input), cnn(cnn_input).detach().numpy(), atol=1e-4, rtol=1e-4
    )

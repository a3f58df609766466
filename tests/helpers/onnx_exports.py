"""Small models exported to ONNX by name, their graph summaries, an unpriceable graph: farm/graph tests."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from adacomp.device_farm.graph import GraphSummary, analyze
from adacomp.search_spaces import CompressionPlan, Step, compress, export_onnx

CNN_INPUT = (2, 3, 16, 16)
MLP_INPUT = (2, 64)
LAYERS = ("0", "3", "7")  # the weighted layers of `cnn()`


def cnn(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    ).eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


def _plan(variant: str) -> CompressionPlan | None:
    if variant in ("int8", "int8_weights", "fp16"):
        return CompressionPlan.from_mapping(
            {layer: [Step.of("quantize", precision=variant)] for layer in LAYERS}
        )
    if variant == "pruned":
        return CompressionPlan.from_mapping(
            {layer: [Step.of("magnitude_prune", sparsity=0.8)] for layer in LAYERS}
        )
    if variant == "depthwise":
        return CompressionPlan.from_mapping({"3": [Step.of("depthwise_separable", multiplier=1)]})
    return None


@functools.cache
def torch_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The torch model behind `exported(name)` and its example input."""
    if name == "mlp":
        return mlp(), torch.randn(*MLP_INPUT)
    base, _, variant = name.partition(":")
    width = int(base.removeprefix("cnn") or 16)
    example = torch.randn(*CNN_INPUT)
    plan = _plan(variant)
    model = cnn(width)
    if plan is not None and variant in ("pruned", "depthwise"):
        model = compress(model, plan, example)
    return model, example


@functools.cache
def exported(name: str) -> bytes:
    """ONNX bytes of a small model by name: "cnn", "cnn32", "cnn:int8", "cnn:fp16", "cnn:pruned",
    "cnn:depthwise", "mlp". Cached for the session: the dynamo exporter takes about a second per model.
    """
    model, example = torch_model(name)
    plan = _plan(name.partition(":")[2])
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((4, *example.shape[1:])).astype(np.float32) for _ in range(2)]
    return export_onnx(model, example, plan=plan, calibration=calibration)


@functools.cache
def summary(name: str, batch_size: int = 1) -> GraphSummary:
    return analyze(onnx.load_from_string(exported(name)), batch_size=batch_size)


def data_dependent_conv() -> onnx.ModelProto:
    """A graph whose conv input shape depends on data (a runtime shape tensor): not priceable."""
    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, 3, 3, 3], np.zeros(108, dtype=np.float32).tolist()
    )
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape0"),
            helper.make_node("Conv", ["r", "w"], ["y"], name="conv0", pads=[1, 1, 1, 1]),
        ],
        "dynamic",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 192]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def mismatched_matmul() -> onnx.ModelProto:
    """A graph onnx's checker accepts and ONNX Runtime refuses to load (a MatMul of (1, 4) by
    (5, 3)): a model a working device cannot run."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [5, 3], np.zeros(15, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "mismatched",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def computed_slice_conv() -> onnx.ModelProto:
    """Two inputs with a symbolic batch, and a conv whose input shape only a run reveals: the
    first half of `x`'s channels, the half computed from ``Shape -> Gather -> Div`` (which ONNX's
    data propagation does not follow), plus `y` broadcast over them; conv0 is a 3x3 conv from 2
    to 4 channels."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 2, 3, 3], np.ones(72, dtype=np.float32).tolist())
    constants = [
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("two", TensorProto.INT64, [1], [2]),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["shape"], name="shape0"),
            helper.make_node("Gather", ["shape", "one"], ["channels"], name="gather0", axis=0),
            helper.make_node("Div", ["channels", "two"], ["half"], name="div0"),
            helper.make_node("Slice", ["x", "zero", "half", "one"], ["first"], name="slice0"),
            helper.make_node("Add", ["first", "y"], ["sum"], name="add0"),
            helper.make_node("Conv", ["sum", "w"], ["out"], name="conv0", pads=[1, 1, 1, 1]),
        ],
        "computed_slice",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8, 8]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [weight, *constants],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model

"""The standard networks published device latencies are measured on, exported as ONNX here.

Checking an emulated profile against a published figure needs the same graph: MobileNetV1
(Howard et al., 2017) and MobileNetV2 (Sandler et al., 2018) at width 1.0 and 224x224, 1000
classes, fp32 or int8 (QDQ, per-channel weights, calibrated on random inputs: the kernels and
their shapes are what matter, not the weights). Untrained weights, nothing downloaded.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from adacomp.platform.ops.calibration_models import precision_plan
from adacomp.search_spaces import export_onnx
from adacomp.tasks.mobile import MobileNetV2

REFERENCE_MODELS = ("mobilenet_v1_224", "mobilenet_v2_224")
PRECISIONS = ("fp32", "int8")

# (output channels, stride) of MobileNetV1's 13 depthwise-separable blocks (Table 1 of the paper).
_V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn_relu(c_in: int, c_out: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(),
    ]


def mobilenet_v1() -> nn.Module:
    layers = _conv_bn_relu(3, 32, 3, 2)
    channels = 32
    for out, stride in _V1_BLOCKS:
        layers += _conv_bn_relu(channels, channels, 3, stride, groups=channels)
        layers += _conv_bn_relu(channels, out, 1, 1)
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1000)]
    return nn.Sequential(*layers)


def build(name: str) -> nn.Module:
    if name == "mobilenet_v1_224":
        return mobilenet_v1()
    if name == "mobilenet_v2_224":
        return MobileNetV2(num_classes=1000, width_mult=1.0)
    raise ValueError(f"unknown reference model {name!r}; expected one of {', '.join(REFERENCE_MODELS)}")


@functools.cache
def reference_onnx(name: str, precision: str) -> bytes:
    """ONNX bytes of a reference model at `precision` ("fp32" or "int8"), batch 1, 224x224."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    torch.manual_seed(0)
    model = build(name).eval()
    example = torch.randn(1, 3, 224, 224)
    if precision == "fp32":
        return export_onnx(model, example)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((2, 3, 224, 224)).astype(np.float32) for _ in range(2)]
    return export_onnx(model, example, plan=precision_plan(model, example, "int8"), calibration=batches)

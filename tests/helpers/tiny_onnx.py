"""`tiny_model`, a small real ONNX model: device_farm/conftest, test_store, test_farm_cli, test_faults."""

from __future__ import annotations

import torch
from torch import nn

from adacomp.device_farm import OnnxModel
from adacomp.search_spaces import export_onnx


def tiny_model(width: int = 16) -> OnnxModel:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(width * 64, 10)
    ).eval()
    return OnnxModel(export_onnx(model, torch.randn(2, 1, 8, 8)), f"tiny{width}.onnx")

"""Real ONNX models for the farm tests, exported from small torch models."""

from __future__ import annotations

import pytest

from adacomp.device_farm import OnnxModel
from tests.helpers.tiny_onnx import tiny_model


@pytest.fixture(scope="session")
def onnx_model() -> OnnxModel:
    return tiny_model()


@pytest.fixture(scope="session")
def other_onnx_model() -> OnnxModel:
    return tiny_model(8)

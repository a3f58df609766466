"""An ONNX model as the farm sees it: bytes, a content hash, and a validity check.

Models cross process and machine boundaries only as ONNX; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import onnx

from adacomp.errors import AdacompError


@dataclass(frozen=True)
class OnnxModel:
    data: bytes = field(repr=False)
    name: str = "model.onnx"

    @cached_property
    def sha256(self) -> str:  # computed once: the emulator keys its caches on it
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def from_path(cls, path: str | Path) -> OnnxModel:
        path = Path(path)
        try:
            return cls(path.read_bytes(), path.name)
        except FileNotFoundError:
            raise AdacompError(f"model file {str(path)!r} does not exist") from None
        except (IsADirectoryError, PermissionError) as exc:
            raise AdacompError(f"model file {str(path)!r} cannot be read: {exc}") from None

    def proto(self) -> onnx.ModelProto:
        return load_checked(self.data, self.name)


def load_checked(data: bytes, name: str = "model") -> onnx.ModelProto:
    """Parse and check ONNX bytes; anything else is refused with a one-line reason."""
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise AdacompError(f"{name}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node:
        raise AdacompError(f"{name}: not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise AdacompError(f"{name}: ONNX checker refused the model: {first}") from None
    return proto

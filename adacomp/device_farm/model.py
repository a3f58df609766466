"""An ONNX model as the farm sees it: bytes, a content hash, and a validity check.

Models cross process and machine boundaries only as ONNX; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
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
    # Before the checker: it (and later onnxruntime) opens external files relative to the working
    # directory, so a model naming one would read this machine's files and tell, by how it
    # failed, which exist. The farm carries models as bytes: such a model is never measurable.
    external = external_data_tensors(proto)
    if external:
        more = f" and {len(external) - 1} more" if len(external) > 1 else ""
        raise AdacompError(
            f"{name}: the model keeps tensor data in external files ({_shown(external[0])}{more}); "
            "only self-contained models are measured (save with save_as_external_data=False)"
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise AdacompError(f"{name}: ONNX checker refused the model: {first}") from None
    return proto


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    for tensor in graph.initializer:
        yield f"initializer {tensor.name!r}", tensor
    for sparse in graph.sparse_initializer:
        yield f"sparse initializer {sparse.values.name!r}", sparse.values
        yield f"sparse initializer {sparse.values.name!r}", sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterator[tuple[str, onnx.TensorProto]]:
    for node in nodes:
        for attribute in node.attribute:
            where = f"attribute {attribute.name!r} of node {node.name or node.op_type!r}"
            if attribute.HasField("t"):
                yield where, attribute.t
            for tensor in attribute.tensors:
                yield where, tensor
            sparse_tensors = [*attribute.sparse_tensors]
            if attribute.HasField("sparse_tensor"):
                sparse_tensors.append(attribute.sparse_tensor)
            for sparse in sparse_tensors:
                yield where, sparse.values
                yield where, sparse.indices
            subgraphs = [*attribute.graphs]
            if attribute.HasField("g"):
                subgraphs.append(attribute.g)
            for subgraph in subgraphs:
                yield from _graph_tensors(subgraph)


def external_data_tensors(proto: onnx.ModelProto) -> list[str]:
    """Where `proto` keeps tensor data in external files (names a reader would open)."""

    def all_tensors() -> Iterator[tuple[str, onnx.TensorProto]]:
        yield from _graph_tensors(proto.graph)
        for function in proto.functions:
            yield from _node_tensors(function.node)
        for training in proto.training_info:
            yield from _graph_tensors(training.initialization)
            yield from _graph_tensors(training.algorithm)

    return [
        where
        for where, tensor in all_tensors()
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0
    ]


def _shown(text: str, limit: int = 120) -> str:
    safe = "".join(char if char.isascii() and char.isprintable() else "?" for char in text)
    return safe if len(safe) <= limit else safe[:limit] + "..."

"""Sessions open the way the artifact asks (adacomp.runtime.session), with onnxruntime only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from adacomp.runtime.session import (
    SESSION_CONFIG_KEY,
    declared_session_config,
    encode_session_config,
    open_session,
)


def _matmul_model(metadata: dict[str, str] | None = None) -> bytes:
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32) * 2, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_an_ordinary_model_declares_nothing_and_runs() -> None:
    plain = _matmul_model()
    assert declared_session_config(plain) == {}
    out = open_session(plain, threads=1).run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_allclose(out, 2 * np.ones((1, 4)))


def test_declared_entries_are_read_from_bytes_and_from_a_file(tmp_path: Path) -> None:
    entries = {"session.disable_quant_qdq": "1", "session.disable_prepacking": "1"}
    declared = _matmul_model({SESSION_CONFIG_KEY: encode_session_config(entries), "author": "x"})
    path = tmp_path / "model.onnx"
    path.write_bytes(declared)
    assert declared_session_config(declared) == entries
    assert declared_session_config(path) == entries
    out = open_session(path, threads=1, quiet=True).run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_allclose(out, 2 * np.ones((1, 4)))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"a": 1}', "expected a JSON object"),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_key(raw: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"{SESSION_CONFIG_KEY}: {expected}"):
        declared_session_config(_matmul_model({SESSION_CONFIG_KEY: raw}))


def test_a_session_that_shares_its_cores_does_not_spin() -> None:
    """spin=False turns off ORT's busy-waiting intra-op threads; the default keeps ORT's own."""
    quiet = open_session(_matmul_model(), threads=1, spin=False).get_session_options()
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert quiet.intra_op_num_threads == 1
    default = open_session(_matmul_model(), threads=1).get_session_options()
    with pytest.raises(RuntimeError, match="allow_spinning"):  # never set: ORT's default
        default.get_session_config_entry("session.intra_op.allow_spinning")

"""Open an ONNX Runtime session the way the artifact asks to be run.

Some compressed artifacts are only fast when ONNX Runtime is told how to load them. A model whose
weights are stored as int8 and computed in float (`quantize` precision `int8_weights`) keeps a
DequantizeLinear in front of every weight. With ORT's QDQ handling on (the default) those nodes
are kept for QDQ fusion and run on every call: measured on this repo's MobileNetV2 x0.5, 4.4 ms
against 0.88 ms for the float model. With `session.disable_quant_qdq` they are constant-folded
at load time and the model runs at float speed (0.83 ms) from a file four times smaller.

So the artifact carries what it needs: the ONNX metadata entry `SESSION_CONFIG_KEY` holds a JSON
object of ORT session config entries, and every place that runs a model (the host worker, the
agent on a board, accuracy evaluation, the runtime on the device) opens it with `open_session`.
Only onnxruntime is needed, so the device runtime stays light: the entry is read through a
probe session with graph optimisation off, and only for files that contain the key at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adacomp.safe_load import parse_json

SESSION_CONFIG_KEY = "adacomp.onnxruntime.session_config"
PROVIDERS = ["CPUExecutionProvider"]


def declared_session_config(model: bytes | str | Path) -> dict[str, str]:
    """The ORT session config entries the artifact declares ({} for an ordinary model).

    Raises ValueError naming the key when the entry is not a JSON object of strings."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    if SESSION_CONFIG_KEY.encode() not in data:
        return {}
    import onnxruntime as ort

    probe_options = ort.SessionOptions()
    probe_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe_options.log_severity_level = 3
    probe = ort.InferenceSession(data, probe_options, providers=PROVIDERS)
    raw = probe.get_modelmeta().custom_metadata_map.get(SESSION_CONFIG_KEY)
    if raw is None:
        return {}
    return parse_session_config(raw)


def parse_session_config(raw: str) -> dict[str, str]:
    value = parse_json(raw, f"model metadata {SESSION_CONFIG_KEY}")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"model metadata {SESSION_CONFIG_KEY}: expected a JSON object of strings")
    return dict(value)


def encode_session_config(entries: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(entries.items())), separators=(",", ":"))


def open_session(
    model: bytes | str | Path,
    *,
    threads: int | None = None,
    optimization: str = "all",
    quiet: bool = False,
    config: Mapping[str, str] | None = None,
    spin: bool = True,
    optimized_model_path: str | Path | None = None,
    profile_prefix: str | Path | None = None,
) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU provider, run sequentially on `threads`
    intra-op threads (ORT's default when None), with the session config entries the artifact
    declares. Options are made afresh for each session: entries one artifact declares never
    leak into the next one's. `config`, when given, is what `declared_session_config` already
    read from this model (no second probe). `spin=False` keeps idle intra-op threads from
    busy-waiting between runs (ORT spins by default): what a process that shares its cores with
    others (a search's trial workers) wants; a latency measurement keeps ORT's default.
    `optimized_model_path` saves the graph ORT will run (after its fusions); `profile_prefix`
    turns on ORT's per-kernel profiler (``end_profiling()`` returns its JSON file)."""
    import onnxruntime as ort

    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if quiet:
        options.log_severity_level = 3  # errors only
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    entries = declared_session_config(model) if config is None else config
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=PROVIDERS)

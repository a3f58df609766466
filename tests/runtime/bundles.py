"""Test bundles built with onnx.helper (no torch): one Gemm [N, 64] -> [N, 10] per configuration."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

IN_FEATURES, CLASSES = 64, 10
DEVICES = ("pixel4", "host")  # host has no power meter: its energy is null
UTILITY = {"accuracy": 1.0, "latency": 0.1, "energy": 0.05, "memory": 0.0, "storage": 0.0}

# id, accuracy, latency on pixel4 (host: x2), energy on pixel4, memory (both devices)
THREE = (
    ("big", 0.95, 10.0, 4.0, 8.0),
    ("small", 0.80, 6.0, 2.0, 5.0),
    ("tiny", 0.60, 3.0, 1.0, 2.0),
)


def gemm_weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((IN_FEATURES, CLASSES)).astype(np.float32),
        rng.standard_normal(CLASSES).astype(np.float32),
    )


def gemm_model(seed: int) -> bytes:
    weight, bias = gemm_weights(seed)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "B"], ["logits"])],
        "gemm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", IN_FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def cost(latency: float, energy: float | None, memory: float | None) -> dict[str, Any]:
    return {"latency_ms": latency, "energy_mj": energy, "memory_mb": memory}


def manifest_dict(
    rows: Sequence[tuple[str, float, float, float | None, float | None]] = THREE,
    *,
    utility: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A valid manifest for `rows`; file, sha256 and bytes are placeholders until write_bundle."""
    configurations = [
        {
            "id": config_id,
            "file": f"models/{config_id}.onnx",
            "sha256": "0" * 64,
            "bytes": 1,
            "architecture": {"width": [0.5 + i / 4, 1.0], "bits": 8},
            "accuracy": accuracy,
            "storage_bytes": int(memory * 2**20 / 4) if memory else 1000,
            "devices": {"pixel4": cost(latency, energy, memory), "host": cost(latency * 2, None, memory)},
        }
        for i, (config_id, accuracy, latency, energy, memory) in enumerate(rows)
    ]
    return {
        "schema_version": 1,
        "name": "digits",
        "task": "digits",
        "created": "2026-11-23T18:00:00+00:00",
        "input": {"name": "input", "shape": [None, IN_FEATURES], "dtype": "float32"},
        "output": {"name": "logits"},
        "utility": dict(utility or UTILITY),
        "devices": list(DEVICES),
        "baseline": {
            "accuracy": 0.98,
            "storage_bytes": 4 * 2**20,
            "devices": {"pixel4": cost(12.0, 5.0, 10.0), "host": cost(24.0, None, 10.0)},
        },
        "configurations": configurations,
    }


def write_bundle(root: Path, data: dict[str, Any] | None = None) -> Path:
    """Write models/<id>.onnx for every configuration (seed = position) and a manifest that matches."""
    data = copy.deepcopy(data if data is not None else manifest_dict())
    (root / "models").mkdir(parents=True, exist_ok=True)
    for seed, config in enumerate(data["configurations"]):
        blob = gemm_model(seed)
        (root / config["file"]).write_bytes(blob)
        config["sha256"], config["bytes"] = hashlib.sha256(blob).hexdigest(), len(blob)
    (root / "manifest.json").write_text(json.dumps(data, indent=2))
    return root


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
_architecture = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        _json_leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)


@st.composite
def manifests(draw: st.DrawFn, max_configs: int = 40) -> dict[str, Any]:
    """Valid manifest dicts: 1-3 devices, some without energy or memory numbers, 1..max_configs configurations."""
    devices = draw(
        st.lists(st.sampled_from(["pixel4", "rpi4", "host", "jetson"]), min_size=1, max_size=3, unique=True)
    )
    has_energy = {d: draw(st.booleans()) for d in devices}
    has_memory = {d: draw(st.booleans()) for d in devices}
    n = draw(st.integers(1, max_configs))
    ids = draw(
        st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True), min_size=n, max_size=n, unique=True)
    )

    def costs() -> dict[str, Any]:
        return {
            d: cost(
                draw(st.floats(0.01, 100)),
                draw(st.floats(0, 50)) if has_energy[d] else None,
                draw(st.floats(0, 50)) if has_memory[d] else None,
            )
            for d in devices
        }

    configurations = [
        {
            "id": config_id,
            "file": f"models/{config_id}.onnx",
            "sha256": draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
            "bytes": draw(st.integers(1, 10**9)),
            "architecture": draw(_architecture),
            "accuracy": draw(st.floats(0, 1)),
            "storage_bytes": draw(st.integers(1, 50 * 2**20)),
            "devices": costs(),
        }
        for config_id in ids
    ]
    return {
        "schema_version": 1,
        "name": draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8)),
        "task": "digits",
        "created": "2026-11-23T18:00:00+00:00",
        "input": {"name": "input", "shape": [None, 1, 8, 8], "dtype": "float32"},
        "output": {"name": "logits"},
        "utility": {k: draw(st.floats(0, 2)) for k in UTILITY},
        "devices": devices,
        "baseline": {
            "accuracy": draw(st.floats(0, 1)),
            "storage_bytes": draw(st.integers(1, 50 * 2**20)),
            "devices": costs(),
        },
        "configurations": configurations,
    }


@st.composite
def selector_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid manifests for selector properties: hypothesis picks the structure, a seeded rng the values.

    Drawing every value through hypothesis costs ~50 ms per 40-configuration manifest; this is ~1 ms.
    `coarse` rounds values to a grid so that ties (and equal utilities) occur; zero baselines make
    the utility normalise by the maximum instead.
    """
    devices = draw(st.lists(st.sampled_from(["pixel4", "rpi4", "host"]), min_size=1, max_size=3, unique=True))
    has_energy = {d: draw(st.booleans()) for d in devices}
    has_memory = {d: draw(st.booleans()) for d in devices}
    n = draw(st.integers(1, 40))
    coarse = draw(st.booleans())
    zero_baseline = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def value(low: float, high: float) -> float:
        x = float(rng.uniform(low, high))
        return round(x, 0 if high > 10 else 1) if coarse else x

    def costs(baseline: bool = False) -> dict[str, Any]:
        zero = 0.0 if baseline and zero_baseline else None
        return {
            d: cost(
                max(value(0.01, 100), 0.01),
                (zero if zero is not None else value(0, 50)) if has_energy[d] else None,
                (zero if zero is not None else value(0, 50)) if has_memory[d] else None,
            )
            for d in devices
        }

    configurations = [
        {
            "id": f"c{i}",
            "file": f"models/c{i}.onnx",
            "sha256": "ab" * 32,
            "bytes": 1,
            "architecture": {},
            "accuracy": value(0, 1),
            "storage_bytes": int(rng.integers(1, 50 * 2**20)),
            "devices": costs(),
        }
        for i in range(n)
    ]
    return {
        **manifest_dict(),
        "utility": {k: value(0, 2) for k in UTILITY},
        "devices": devices,
        "baseline": {
            "accuracy": 0.0 if zero_baseline else value(0.5, 1),
            "storage_bytes": int(rng.integers(1, 50 * 2**20)),
            "devices": costs(baseline=True),
        },
        "configurations": configurations,
    }

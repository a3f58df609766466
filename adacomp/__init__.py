"""adacomp: usage-driven, adaptive deep-model compression.

This top-level module stays import-light (no torch) so that `adacomp.runtime` can ship to a
device with numpy and onnxruntime only; the main API is reached lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CompressionPlan": "adacomp.search_spaces",
    "Step": "adacomp.search_spaces",
    "compress": "adacomp.search_spaces",
    "build_space": "adacomp.search_spaces",
    "export_onnx": "adacomp.search_spaces",
    "model_facts": "adacomp.search_spaces",
    "register_technique": "adacomp.search_spaces",
    "load_task": "adacomp.tasks",
    "AdacompError": "adacomp.errors",
    "search": "adacomp.platform.search.job",
    "SearchResult": "adacomp.platform.search.job",
    "SearchConfig": "adacomp.platform.search_config",
    "load_search_config": "adacomp.platform.search_config",
    "open_search": "adacomp.platform.results.snapshot",
    "register_strategy": "adacomp.platform.strategies.registry",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adacomp' has no attribute {name!r}")

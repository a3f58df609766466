"""What ships to the device: the bundle reader, the selector and the switching runtime.

Only numpy, onnxruntime and the standard library are imported here (and `adacomp.errors`, which
imports nothing), so a device can run adaptation without torch, Ray, pydantic or MLflow; a test
keeps it that way.
"""

from __future__ import annotations

from adacomp.runtime.adaptive import AdaptiveModel, SwitchEvent
from adacomp.runtime.manifest import (
    MANIFEST_NAME,
    MODEL_FORMATS,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    Baseline,
    BundleFile,
    Configuration,
    DeviceCost,
    InputSpec,
    Manifest,
    ManifestError,
    ModelFormat,
    OutputSpec,
    UtilityWeights,
    configuration_path,
    file_sha256,
    load_manifest,
    save_manifest,
    verify_files,
)
from adacomp.runtime.selector import CONTEXT_FIELDS, Context, Selection, Selector
from adacomp.runtime.trace import (
    Replay,
    ReplayStep,
    TraceError,
    TracePoint,
    drain_trace,
    load_trace,
    replay,
    replay_static,
    write_trace_csv,
)

__all__ = [
    "CONTEXT_FIELDS",
    "MANIFEST_NAME",
    "MODEL_FORMATS",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "AdaptiveModel",
    "Baseline",
    "BundleFile",
    "Configuration",
    "Context",
    "DeviceCost",
    "InputSpec",
    "Manifest",
    "ManifestError",
    "ModelFormat",
    "OutputSpec",
    "Replay",
    "ReplayStep",
    "Selection",
    "Selector",
    "SwitchEvent",
    "TraceError",
    "TracePoint",
    "UtilityWeights",
    "configuration_path",
    "drain_trace",
    "file_sha256",
    "load_manifest",
    "load_trace",
    "replay",
    "replay_static",
    "save_manifest",
    "verify_files",
    "write_trace_csv",
]

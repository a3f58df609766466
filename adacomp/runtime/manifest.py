"""The bundle manifest (schema v2): what a device needs to pick and load a compressed model.

A bundle is a directory holding `manifest.json` and one ONNX file per configuration of the
supernet. The manifest carries, per configuration and per device, the measured costs the selector
ranks by, plus the uncompressed baseline the utility is normalised by.

Version 2 adds ONNX Runtime's own format: per configuration an optional `ort` entry (the same
model as a `.ort` file, what ORT's minimal and mobile builds load) and, at the top, an optional
`ort_operators` entry (the operator config such a reduced build is compiled with), each a file
with its sha256 and size. Either every configuration has an `ort` entry and `ort_operators` is
given, or none of them. Version 1 manifests (ONNX only) still load; a runtime that reads only
version 1 refuses a version 2 manifest by its version, in one line, rather than by an unknown
field.

Validation is written by hand rather than with pydantic: this module runs on the device, where only
numpy and onnxruntime are installed. Every error names the file and the JSON path of the bad value,
e.g. ``bundle/manifest.json: configurations[3].devices.pixel4.latency_ms: expected a number > 0,
got 'abc'``, and unknown keys are refused so that a typo is not silently ignored.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

from adacomp.atomic import write_atomically
from adacomp.errors import AdacompError
from adacomp.safe_load import LoadLimits, parse_json, read_text

SCHEMA_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
# The files a configuration can be loaded from: ONNX, or ONNX Runtime's format (schema v2).
ModelFormat = Literal["onnx", "ort"]
MODEL_FORMATS: tuple[ModelFormat, ...] = ("onnx", "ort")
UTILITY_TERMS = ("accuracy", "latency", "energy", "memory", "storage")
# Element types an exported model's input may have (numpy names).
INPUT_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int32", "int64")

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# Bounds far above what `adacomp export` writes (a bundle ships `supernet.bundle_size`
# configurations, 8 by default) and far below what slows a device's selector or its memory.
MAX_CONFIGURATIONS = 1024
MAX_DEVICES = 256
MAX_STRING = 256  # ids, names, dtypes
MAX_FILE_NAME = 1024
MAX_INTEGER = 1 << 50  # bytes and sizes: a petabyte
MAX_NUMBER = 1e12  # ms, mJ, MiB and weights
MANIFEST_LIMITS = LoadLimits(max_bytes=16 * 1024 * 1024, max_depth=32)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class ManifestError(AdacompError):
    """A bundle or manifest a user gave is invalid (an AdacompError, hence a ValueError)."""


@dataclass(frozen=True)
class DeviceCost:
    """One model's measured cost on one device; None where the device cannot measure it."""

    latency_ms: float
    energy_mj: float | None = None
    memory_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "energy_mj": self.energy_mj, "memory_mb": self.memory_mb}


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]  # None: a dynamic dimension (usually the batch)
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class OutputSpec:
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True)
class UtilityWeights:
    """The weights the device's selector ranks by (AdaDeep's form, see selector.py): the config's
    `supernet.runtime_utility`, else the search's own utility."""

    accuracy: float
    latency: float
    energy: float
    memory: float
    storage: float

    def to_dict(self) -> dict[str, Any]:
        return {term: getattr(self, term) for term in UTILITY_TERMS}


@dataclass(frozen=True)
class Baseline:
    """The uncompressed model: the utility's costs are ratios to these."""

    accuracy: float
    storage_bytes: int
    devices: Mapping[str, DeviceCost]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "storage_bytes": self.storage_bytes,
            "devices": {name: cost.to_dict() for name, cost in self.devices.items()},
        }


@dataclass(frozen=True)
class BundleFile:
    """A file of the bundle other than the manifest, with the size and sha256 it was written with."""

    file: str  # relative to the bundle directory, POSIX separators
    sha256: str
    bytes: int

    @classmethod
    def of(cls, bundle_dir: str | os.PathLike[str], file: str) -> BundleFile:
        """The entry for `file` (relative to `bundle_dir`) as it is on disk now."""
        path = Path(bundle_dir) / file
        return cls(file, file_sha256(path), path.stat().st_size)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Configuration:
    """One configuration of the supernet, exported (and quantized) as its own ONNX file, and from
    schema v2 on, usually also as an ORT format file (`ort`)."""

    id: str
    file: str  # the ONNX model, relative to the bundle directory, POSIX separators
    sha256: str
    bytes: int
    architecture: Mapping[str, Any]  # the supernet's configuration, as data
    accuracy: float
    storage_bytes: int
    devices: Mapping[str, DeviceCost]
    ort: BundleFile | None = None  # the same model in ONNX Runtime's format; None in v1 bundles

    @property
    def onnx(self) -> BundleFile:
        return BundleFile(self.file, self.sha256, self.bytes)

    def model(self, model_format: ModelFormat) -> BundleFile:
        """The file of this configuration in `model_format`; a ManifestError if the bundle has none."""
        if model_format == "onnx":
            return self.onnx
        if model_format == "ort" and self.ort is not None:
            return self.ort
        if model_format == "ort":
            raise ManifestError(
                f"configuration {self.id!r} has no ORT format model (a bundle of schema v1, or written "
                "without them): load it as onnx, or export the bundle again"
            )
        raise ValueError(f"model format: expected one of {', '.join(MODEL_FORMATS)}, got {model_format!r}")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "architecture": copy.deepcopy(dict(self.architecture)),
            "accuracy": self.accuracy,
            "storage_bytes": self.storage_bytes,
            "devices": {name: cost.to_dict() for name, cost in self.devices.items()},
        }
        if self.ort is not None:
            data["ort"] = self.ort.to_dict()
        return data


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str
    task: str
    created: str  # ISO 8601
    input: InputSpec
    output: OutputSpec
    utility: UtilityWeights
    devices: tuple[str, ...]
    baseline: Baseline
    configurations: tuple[Configuration, ...]
    # The operators (and types) of every configuration's ORT model: what a reduced ORT build is
    # compiled with (`--include_ops_by_config`). None when the bundle has no ORT models.
    ort_operators: BundleFile | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c.id: i for i, c in enumerate(self.configurations)})

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.configurations)

    @property
    def formats(self) -> tuple[ModelFormat, ...]:
        """The formats every configuration can be loaded from: ("onnx",) or ("onnx", "ort")."""
        return MODEL_FORMATS if self.ort_operators is not None else ("onnx",)

    def index(self, config_id: str) -> int:
        """Position of a configuration; a ManifestError listing some ids when it is unknown."""
        try:
            return self._index[config_id]
        except KeyError:
            shown = ", ".join(list(self._index)[:8]) + (", ..." if len(self._index) > 8 else "")
            raise ManifestError(
                f"unknown configuration {config_id!r}; the manifest has {len(self._index)}: {shown}"
            ) from None

    def configuration(self, config_id: str) -> Configuration:
        return self.configurations[self.index(config_id)]

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema_version": self.schema_version,
            "name": self.name,
            "task": self.task,
            "created": self.created,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "utility": self.utility.to_dict(),
            "devices": list(self.devices),
            "baseline": self.baseline.to_dict(),
            "configurations": [c.to_dict() for c in self.configurations],
        }
        if self.ort_operators is not None:
            data["ort_operators"] = self.ort_operators.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object, source: str = "<manifest>") -> Manifest:
        """Validate `data` (parsed JSON); `source` prefixes every error message."""
        return _Reader(source).manifest(data)


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest: a `manifest.json` file or the bundle directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: no such file (a bundle is a directory with {MANIFEST_NAME})")
    if path.is_symlink() and not path.resolve().is_relative_to(path.parent.resolve()):
        # Model files that point out of the bundle are refused (configuration_path); so is this.
        raise ManifestError(f"{path}: a symlink out of the bundle; the manifest must lie in the bundle")
    try:
        text = read_text(path, "manifest", MANIFEST_LIMITS, shown=str(path))
        data = parse_json(text, str(path), MANIFEST_LIMITS)
    except ManifestError:
        raise
    except AdacompError as exc:
        raise ManifestError(str(exc)) from None
    return Manifest.from_dict(data, source=str(path))


def save_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> Path:
    """Validate and write atomically (adacomp.atomic): a reader never sees half a manifest.

    `path` is the manifest file or the bundle directory. Returns the file written, whose mode is
    that of the bundle's other files (0666 less the umask, 0644 by default).
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = manifest.to_dict()
    Manifest.from_dict(data, source=f"{path} (not written)")  # a Manifest built in code is checked too
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    write_atomically(path, text, durable=True)
    return path


def configuration_path(
    bundle_dir: str | os.PathLike[str], configuration: Configuration, model_format: ModelFormat = "onnx"
) -> Path:
    """Where a configuration's model in `model_format` lies; a ManifestError if it resolves outside
    the bundle, or if the bundle has no model in that format."""
    return _inside(bundle_dir, configuration.model(model_format), f"configuration {configuration.id!r}")


def _inside(bundle_dir: str | os.PathLike[str], entry: BundleFile, what: str) -> Path:
    root = Path(bundle_dir).resolve()
    path = (root / entry.file).resolve()
    if not path.is_relative_to(root):  # a symlink out of the bundle
        raise ManifestError(f"{bundle_dir}: {what}: {entry.file} is outside the bundle")
    return path


def verify_files(
    bundle_dir: str | os.PathLike[str],
    manifest: Manifest,
    *,
    check_hashes: bool = True,
    model_formats: Iterable[ModelFormat] | None = None,
) -> None:
    """Every file the manifest lists exists inside the bundle with the manifest's size and sha256.

    `model_formats` narrows the check to the models in those formats (and skips the operator
    config, which only a build of ORT reads): a device that ships only the `.ort` files, or only
    the `.onnx` ones, checks what it has. A format the bundle lacks is a ManifestError."""
    formats = tuple(manifest.formats if model_formats is None else model_formats)
    files: list[tuple[BundleFile, str]] = []
    for config in manifest.configurations:
        for model_format in formats:
            kind = "" if model_format == "onnx" else ", ORT format"
            files.append((config.model(model_format), f"configuration {config.id!r}{kind}"))
    if model_formats is None and manifest.ort_operators is not None:
        files.append((manifest.ort_operators, "the ORT operator config"))
    for entry, what in files:
        _verify_file(bundle_dir, entry, what, check_hashes)


def _verify_file(bundle_dir: str | os.PathLike[str], entry: BundleFile, what: str, check_hash: bool) -> None:
    path = _inside(bundle_dir, entry, what)
    shown = Path(bundle_dir) / entry.file
    if not path.is_file():
        raise ManifestError(f"{shown}: missing ({what})")
    size = path.stat().st_size
    if size != entry.bytes:
        raise ManifestError(f"{shown}: {size} bytes, the manifest says {entry.bytes} ({what})")
    if check_hash:
        digest = file_sha256(path)
        if digest != entry.sha256.lower():
            raise ManifestError(
                f"{shown}: sha256 {digest}, the manifest says {entry.sha256} "
                f"({what}; the file changed after the bundle was written)"
            )


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Reader:
    """Turns parsed JSON into dataclasses, failing with the file and JSON path of a bad value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.version = SCHEMA_VERSION  # set from the manifest before its configurations are read

    def fail(self, path: str, message: str) -> NoReturn:
        raise ManifestError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def mapping(
        self, value: object, path: str, required: Sequence[str], optional: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {_shown(value)}")
        for key in required:
            if key not in value:
                self.fail(path, f"missing field {key!r}")
        unknown = [key for key in value if key not in required and key not in optional]
        if unknown:
            self.fail(_join(path, unknown[0]), f"unknown field; expected {', '.join(required)}")
        return value

    def string(
        self,
        value: object,
        path: str,
        pattern: re.Pattern[str] | None = None,
        max_length: int = MAX_STRING,
    ) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {_shown(value)}")
        if len(value) > max_length:
            self.fail(path, f"expected at most {max_length} characters, got {len(value)}")
        if any(ord(c) < 32 for c in value):
            self.fail(path, f"expected no control characters (NUL, newline, ...), got {_shown(value)}")
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"expected a string matching {pattern.pattern}, got {_shown(value)}")
        return value

    def number(
        self, value: object, path: str, *, positive: bool = False, at_most: float | None = None
    ) -> float:
        low = "> 0" if positive else ">= 0"
        bound = f"in [0, {at_most:g}]" if at_most is not None else f"{low} and <= {MAX_NUMBER:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number {bound}, got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            self.fail(path, f"expected a number {bound}, got an integer past a float's range")
        high = MAX_NUMBER if at_most is None else at_most
        low_ok = number > 0 if positive else number >= 0
        if not math.isfinite(number) or not low_ok or number > high:
            self.fail(path, f"expected a number {bound}, got {_shown(value)}")
        return number

    def integer(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_INTEGER:
            self.fail(path, f"expected an integer in [1, {MAX_INTEGER}], got {_shown(value)}")
        return value

    def manifest(self, data: object) -> Manifest:
        top = self.mapping(
            data,
            "",
            (
                "schema_version", "name", "task", "created", "input", "output",
                "utility", "devices", "baseline", "configurations",
            ),
            ("ort_operators",),
        )  # fmt: skip
        version = top["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
            supported = " or ".join(map(str, SUPPORTED_VERSIONS))
            self.fail(
                "schema_version",
                f"unsupported version {version!r}; this runtime reads version {supported} "
                "(update adacomp on the device, or export the bundle for it)",
            )
        self.version = version
        self.since_v2(top, "ort_operators", "ort_operators")
        created = self.string(top["created"], "created")
        try:
            datetime.datetime.fromisoformat(created)
        except ValueError:
            self.fail("created", f"expected an ISO 8601 time like 2026-11-23T18:00:00+00:00, got {created!r}")
        devices = self.devices(top["devices"])
        configs = top["configurations"]
        if not isinstance(configs, list) or not configs:
            self.fail("configurations", f"expected a non-empty list, got {_shown(configs)}")
        if len(configs) > MAX_CONFIGURATIONS:
            self.fail("configurations", f"{len(configs)} configurations; at most {MAX_CONFIGURATIONS}")
        configurations = tuple(
            self.configuration(c, f"configurations[{i}]", devices) for i, c in enumerate(configs)
        )
        seen: dict[str, int] = {}
        for i, config in enumerate(configurations):
            if config.id in seen:
                self.fail(
                    f"configurations[{i}].id",
                    f"duplicate id {config.id!r} (configurations[{seen[config.id]}])",
                )
            seen[config.id] = i
        baseline = self.baseline(top["baseline"], devices)
        self.check_nulls(devices, configurations, baseline)
        ort_operators = (
            self.bundle_file(top["ort_operators"], "ort_operators") if "ort_operators" in top else None
        )
        self.check_ort(configurations, ort_operators)
        return Manifest(
            schema_version=version,
            name=self.string(top["name"], "name"),
            task=self.string(top["task"], "task"),
            created=created,
            input=self.input(top["input"]),
            output=OutputSpec(
                self.string(self.mapping(top["output"], "output", ("name",))["name"], "output.name")
            ),
            utility=self.utility(top["utility"]),
            devices=devices,
            baseline=baseline,
            configurations=configurations,
            ort_operators=ort_operators,
        )

    def devices(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail("devices", f"expected a non-empty list of device names, got {_shown(value)}")
        if len(value) > MAX_DEVICES:
            self.fail("devices", f"{len(value)} devices; at most {MAX_DEVICES}")
        names = tuple(self.string(v, f"devices[{i}]") for i, v in enumerate(value))
        for i, name in enumerate(names):
            if name in names[:i]:
                self.fail(f"devices[{i}]", f"duplicate device {name!r}")
        return names

    def input(self, value: object) -> InputSpec:
        spec = self.mapping(value, "input", ("name", "shape", "dtype"))
        shape = spec["shape"]
        if not isinstance(shape, list) or not shape:
            self.fail(
                "input.shape", f"expected a non-empty list of sizes (null: dynamic), got {_shown(shape)}"
            )
        dims = tuple(None if d is None else self.integer(d, f"input.shape[{i}]") for i, d in enumerate(shape))
        dtype = spec["dtype"]
        if dtype not in INPUT_DTYPES:
            self.fail("input.dtype", f"expected one of {', '.join(INPUT_DTYPES)}, got {_shown(dtype)}")
        return InputSpec(self.string(spec["name"], "input.name"), dims, dtype)

    def utility(self, value: object) -> UtilityWeights:
        weights = self.mapping(value, "utility", UTILITY_TERMS)
        return UtilityWeights(
            **{term: self.number(weights[term], f"utility.{term}") for term in UTILITY_TERMS}
        )

    def costs(self, value: object, path: str, devices: tuple[str, ...]) -> dict[str, DeviceCost]:
        table = self.mapping(value, path, devices)
        costs = {}
        for device in devices:
            where = _join(path, device)
            entry = self.mapping(table[device], where, ("latency_ms", "energy_mj", "memory_mb"))
            costs[device] = DeviceCost(
                latency_ms=self.number(entry["latency_ms"], f"{where}.latency_ms", positive=True),
                energy_mj=self.optional(entry["energy_mj"], f"{where}.energy_mj"),
                memory_mb=self.optional(entry["memory_mb"], f"{where}.memory_mb"),
            )
        return costs

    def optional(self, value: object, path: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number >= 0 or null, got {_shown(value)}")
        return self.number(value, path)

    def configuration(self, value: object, path: str, devices: tuple[str, ...]) -> Configuration:
        keys = ("id", "file", "sha256", "bytes", "architecture", "accuracy", "storage_bytes", "devices")
        entry = self.mapping(value, path, keys, ("ort",))
        self.since_v2(entry, "ort", f"{path}.ort")
        architecture = entry["architecture"]
        if not isinstance(architecture, dict):
            self.fail(f"{path}.architecture", f"expected an object, got {_shown(architecture)}")
        return Configuration(
            id=self.string(entry["id"], f"{path}.id", _ID),
            file=self.relative_file(entry["file"], f"{path}.file"),
            sha256=self.string(entry["sha256"], f"{path}.sha256", _SHA256),
            bytes=self.integer(entry["bytes"], f"{path}.bytes"),
            architecture=copy.deepcopy(architecture),
            accuracy=self.number(entry["accuracy"], f"{path}.accuracy", at_most=1.0),
            storage_bytes=self.integer(entry["storage_bytes"], f"{path}.storage_bytes"),
            devices=self.costs(entry["devices"], f"{path}.devices", devices),
            ort=self.bundle_file(entry["ort"], f"{path}.ort") if "ort" in entry else None,
        )

    def since_v2(self, entry: Mapping[str, Any], key: str, path: str) -> None:
        if self.version < 2 and key in entry:
            self.fail(path, f"needs schema_version 2; a version {self.version} bundle holds ONNX models only")

    def bundle_file(self, value: object, path: str) -> BundleFile:
        entry = self.mapping(value, path, ("file", "sha256", "bytes"))
        return BundleFile(
            file=self.relative_file(entry["file"], f"{path}.file"),
            sha256=self.string(entry["sha256"], f"{path}.sha256", _SHA256),
            bytes=self.integer(entry["bytes"], f"{path}.bytes"),
        )

    def check_ort(self, configurations: Sequence[Configuration], operators: BundleFile | None) -> None:
        """ORT models come for every configuration, with the operator config, or not at all: a
        device that loads the ORT format can then load any configuration the selector picks."""
        for i, config in enumerate(configurations):
            if (config.ort is None) != (operators is None):
                have = "no ort_operators" if operators is None else "ort_operators"
                self.fail(
                    f"configurations[{i}].ort",
                    f"{'given' if config.ort is not None else 'missing'}, while the manifest has {have}; "
                    "every configuration has an ORT model and the manifest its operator config, or none",
                )

    def relative_file(self, value: object, path: str) -> str:
        name = self.string(value, path, max_length=MAX_FILE_NAME)
        parts = PurePosixPath(name).parts
        if "\\" in name or name.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", name):
            self.fail(path, f"expected a relative path inside the bundle (/-separated, no ..), got {name!r}")
        return name

    def baseline(self, value: object, devices: tuple[str, ...]) -> Baseline:
        entry = self.mapping(value, "baseline", ("accuracy", "storage_bytes", "devices"))
        return Baseline(
            accuracy=self.number(entry["accuracy"], "baseline.accuracy", at_most=1.0),
            storage_bytes=self.integer(entry["storage_bytes"], "baseline.storage_bytes"),
            devices=self.costs(entry["devices"], "baseline.devices", devices),
        )

    def check_nulls(
        self, devices: Iterable[str], configurations: Sequence[Configuration], baseline: Baseline
    ) -> None:
        """Per device, energy (and memory) is measured for every model or for none of them."""
        rows = [(f"configurations[{i}]", c.devices) for i, c in enumerate(configurations)]
        rows.append(("baseline", baseline.devices))
        for device in devices:
            for metric in ("energy_mj", "memory_mb"):
                first = getattr(configurations[0].devices[device], metric) is None
                for path, costs in rows:
                    if (getattr(costs[device], metric) is None) != first:
                        have = "null" if first else "a number"
                        self.fail(
                            f"{path}.devices.{device}.{metric}",
                            f"configurations[0] has {have} here; on one device every configuration "
                            "and the baseline give a number, or all give null (not measured)",
                        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."

"""The manifest: exact round trips, and a clear error naming file and JSON path for every bad input."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from adacomp.errors import AdacompError
from adacomp.runtime import (
    DeviceCost,
    Manifest,
    ManifestError,
    configuration_path,
    load_manifest,
    save_manifest,
    verify_files,
)
from tests.runtime.bundles import THREE, manifest_dict, manifests, write_bundle


@given(manifests(max_configs=4))
@settings(max_examples=40, deadline=None)
def test_to_dict_of_from_dict_is_the_input(data: dict[str, Any]) -> None:
    original = copy.deepcopy(data)
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == original
    assert data == original  # not mutated
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_save_then_load_is_exact_and_leaves_no_temp_file(tmp_path: Path) -> None:
    manifest = Manifest.from_dict(manifest_dict())
    written = save_manifest(manifest, tmp_path)
    assert written == tmp_path / "manifest.json"
    assert load_manifest(tmp_path) == manifest
    assert load_manifest(written).to_dict() == manifest_dict()
    assert os.listdir(tmp_path) == ["manifest.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_the_manifest_gets_the_mode_of_the_bundles_models(tmp_path: Path, umask: int) -> None:
    """Issue 20: manifest.json was written 0600 (tempfile.mkstemp) beside 0644 ONNX files."""
    old = os.umask(umask)
    try:
        write_bundle(tmp_path)  # models/*.onnx written with open(), as `adacomp export` copies them
        save_manifest(Manifest.from_dict(manifest_dict()), tmp_path)
        again = save_manifest(Manifest.from_dict(manifest_dict()), tmp_path)  # replacing one too
    finally:
        os.umask(old)
    mode = stat.S_IMODE(again.stat().st_mode)
    assert mode == 0o666 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "models").iterdir()} == {mode}
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "models"]


def test_save_refuses_an_invalid_manifest_built_in_code_and_keeps_the_old_file(tmp_path: Path) -> None:
    manifest = Manifest.from_dict(manifest_dict())
    save_manifest(manifest, tmp_path)
    before = (tmp_path / "manifest.json").read_text()
    first = manifest.configurations[0]
    bad_cost = {**first.devices, "pixel4": DeviceCost(latency_ms=-1.0, energy_mj=1.0, memory_mb=1.0)}
    broken = replace(
        manifest, configurations=(replace(first, devices=bad_cost), *manifest.configurations[1:])
    )
    with pytest.raises(
        ManifestError, match=r"configurations\[0\]\.devices\.pixel4\.latency_ms: expected a number > 0"
    ):
        save_manifest(broken, tmp_path)
    assert (tmp_path / "manifest.json").read_text() == before
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_configuration_lookup() -> None:
    manifest = Manifest.from_dict(manifest_dict())
    assert manifest.configuration("small").accuracy == 0.80
    assert manifest.index("tiny") == 2 and manifest.ids == ("big", "small", "tiny")
    with pytest.raises(
        ManifestError, match=r"unknown configuration 'huge'; the manifest has 3: big, small, tiny"
    ):
        manifest.configuration("huge")


def test_manifest_error_is_a_one_line_user_error() -> None:
    assert issubclass(ManifestError, AdacompError) and issubclass(ManifestError, ValueError)


Mutation = Callable[[dict[str, Any]], object]


def _set(*path: Any, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(*path: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _v2(*mutations: Mutation) -> Mutation:
    """The mutations applied to the manifest made version 2 (ORT models allowed)."""

    def mutate(data: dict[str, Any]) -> None:
        data["schema_version"] = 2
        for mutation in mutations:
            mutation(data)

    return mutate


CONFIG = ("configurations",)
ORT_FILE = {"file": "models/x.ort", "sha256": "ab" * 32, "bytes": 100}
BAD = {
    "missing field": (_delete(*CONFIG, 1, "sha256"), r"configurations\[1\]: missing field 'sha256'"),
    "wrong type": (_set("name", value=3), r"name: expected a non-empty string, got 3"),
    "latency not a number": (
        _set(*CONFIG, 2, "devices", "pixel4", "latency_ms", value="abc"),
        r"configurations\[2\]\.devices\.pixel4\.latency_ms: expected a number > 0 and <= 1e\+12, got 'abc'",
    ),
    "negative latency": (
        _set(*CONFIG, 0, "devices", "host", "latency_ms", value=-1),
        r"configurations\[0\]\.devices\.host\.latency_ms: expected a number > 0 and <= 1e\+12, got -1",
    ),
    "zero latency": (
        _set(*CONFIG, 0, "devices", "host", "latency_ms", value=0),
        r"configurations\[0\]\.devices\.host\.latency_ms: expected a number > 0 and <= 1e\+12, got 0",
    ),
    "negative energy": (
        _set(*CONFIG, 1, "devices", "pixel4", "energy_mj", value=-0.5),
        r"configurations\[1\]\.devices\.pixel4\.energy_mj: expected a number >= 0 and <= 1e\+12, got -0.5",
    ),
    "energy a string": (
        _set(*CONFIG, 1, "devices", "pixel4", "energy_mj", value="1"),
        r"configurations\[1\]\.devices\.pixel4\.energy_mj: expected a number >= 0 or null, got '1'",
    ),
    "device missing in a configuration": (
        _delete(*CONFIG, 0, "devices", "host"),
        r"configurations\[0\]\.devices: missing field 'host'",
    ),
    "device the manifest does not list": (
        _set(*CONFIG, 0, "devices", "tablet", value={"latency_ms": 1, "energy_mj": None, "memory_mb": None}),
        r"configurations\[0\]\.devices\.tablet: unknown field",
    ),
    "mixed null energy": (
        _set(*CONFIG, 1, "devices", "pixel4", "energy_mj", value=None),
        r"configurations\[1\]\.devices\.pixel4\.energy_mj: configurations\[0\] has a number here",
    ),
    "energy where the others have null": (
        _set(*CONFIG, 2, "devices", "host", "energy_mj", value=1.0),
        r"configurations\[2\]\.devices\.host\.energy_mj: configurations\[0\] has null here",
    ),
    "baseline null where configurations have numbers": (
        _set("baseline", "devices", "pixel4", "memory_mb", value=None),
        r"baseline\.devices\.pixel4\.memory_mb: configurations\[0\] has a number here",
    ),
    "baseline missing a device": (
        _delete("baseline", "devices", "host"),
        r"baseline\.devices: missing field 'host'",
    ),
    "duplicate id": (
        _set(*CONFIG, 2, "id", value="big"),
        r"configurations\[2\]\.id: duplicate id 'big' \(configurations\[0\]\)",
    ),
    "bad id": (_set(*CONFIG, 0, "id", value="a b"), r"configurations\[0\]\.id: expected a string matching"),
    # Issue 18: bounds on what a manifest may hold, each refused in one line naming the place.
    "an id of a megabyte": (
        _set(*CONFIG, 0, "id", value="a" * 1_000_000),
        r"configurations\[0\]\.id: expected at most 256 characters, got 1000000$",
    ),
    "a NUL in a file name": (
        _set(*CONFIG, 0, "file", value="models/a\x00.onnx"),
        r"configurations\[0\]\.file: contains a NUL character$",
    ),
    "an integer of 400 digits": (
        _set(*CONFIG, 0, "bytes", value=10**400),
        r"configurations\[0\]\.bytes: a number longer than 40 digits$",
    ),
    "an integer past the range": (
        _set(*CONFIG, 0, "bytes", value=10**30),
        r"configurations\[0\]\.bytes: expected an integer in \[1, \d+\], got 1000000000000000000000000000000$",
    ),
    "an architecture nested 600 deep": (
        _set(*CONFIG, 0, "architecture", value={"x": _nested(600)}),
        r"configurations\[0\]\.architecture\.x(\[0\])+.*: nested deeper than 32 levels$",
    ),
    "5,000 configurations": (
        lambda data: data.__setitem__("configurations", data["configurations"][:1] * 5_000),
        r"configurations: 5000 configurations; at most 1024$",
    ),
    "50,000 configurations": (
        lambda data: data.__setitem__("configurations", data["configurations"][:1] * 50_000),
        r": \d+ bytes; at most 16777216 are read$",
    ),
    "unknown schema version": (
        _set("schema_version", value=3),
        r"schema_version: unsupported version 3; this runtime reads version 1 or 2",
    ),
    "schema version as a string": (
        _set("schema_version", value="1"),
        r"schema_version: unsupported version '1'",
    ),
    "file escaping the bundle": (
        _set(*CONFIG, 0, "file", value="../elsewhere/model.onnx"),
        r"configurations\[0\]\.file: expected a relative path inside the bundle",
    ),
    "absolute file": (
        _set(*CONFIG, 1, "file", value="/etc/passwd"),
        r"configurations\[1\]\.file: expected a relative path",
    ),
    "accuracy above 1": (
        _set(*CONFIG, 0, "accuracy", value=1.5),
        r"configurations\[0\]\.accuracy: expected a number in \[0, 1\], got 1.5",
    ),
    "bool size": (
        _set(*CONFIG, 0, "bytes", value=True),
        r"configurations\[0\]\.bytes: expected an integer in \[1, \d+\], got True",
    ),
    "float storage": (
        _set(*CONFIG, 0, "storage_bytes", value=1.5),
        r"configurations\[0\]\.storage_bytes: expected an integer in \[1, \d+\], got 1.5",
    ),
    "architecture not an object": (
        _set(*CONFIG, 0, "architecture", value=[1]),
        r"configurations\[0\]\.architecture: expected an object, got a list",
    ),
    "no configurations": (
        _set("configurations", value=[]),
        r"configurations: expected a non-empty list, got an empty list",
    ),
    "no devices": (_set("devices", value=[]), r"devices: expected a non-empty list of device names"),
    "duplicate device": (
        _set("devices", value=["pixel4", "host", "pixel4"]),
        r"devices\[2\]: duplicate device 'pixel4'",
    ),
    "negative weight": (
        _set("utility", "latency", value=-0.3),
        r"utility\.latency: expected a number >= 0 and <= 1e\+12, got -0.3",
    ),
    "missing weight": (_delete("utility", "storage"), r"utility: missing field 'storage'"),
    "unknown top-level field": (_set("extra", value=1), r"extra: unknown field"),
    "typo in a cost": (
        _set(*CONFIG, 0, "devices", "pixel4", "lantency_ms", value=1.0),
        r"configurations\[0\]\.devices\.pixel4\.lantency_ms: unknown field",
    ),
    "bad time": (_set("created", value="yesterday"), r"created: expected an ISO 8601 time"),
    "bad dtype": (_set("input", "dtype", value="float128"), r"input\.dtype: expected one of float32"),
    "bad shape": (
        _set("input", "shape", value=[None, 0]),
        r"input\.shape\[1\]: expected an integer in \[1, \d+\], got 0",
    ),
    "not an object": (lambda data: data.clear(), r"missing field 'schema_version'"),
    "an ORT model in a version 1 manifest": (
        _set(*CONFIG, 0, "ort", value=ORT_FILE),
        r"configurations\[0\]\.ort: needs schema_version 2; a version 1 bundle holds ONNX models only$",
    ),
    "an ORT operator config in a version 1 manifest": (
        _set("ort_operators", value=ORT_FILE),
        r"ort_operators: needs schema_version 2",
    ),
    "ORT models for some configurations only": (
        _v2(_set(*CONFIG, 0, "ort", value=ORT_FILE), _set("ort_operators", value=ORT_FILE)),
        r"configurations\[1\]\.ort: missing, while the manifest has ort_operators; every configuration",
    ),
    "ORT models without their operator config": (
        _v2(*(_set(*CONFIG, i, "ort", value=ORT_FILE) for i in range(3))),
        r"configurations\[0\]\.ort: given, while the manifest has no ort_operators",
    ),
    "an ORT model escaping the bundle": (
        _v2(_set("ort_operators", value={**ORT_FILE, "file": "/etc/passwd"})),
        r"ort_operators\.file: expected a relative path inside the bundle",
    ),
    "a bad ORT hash": (
        _v2(_set(*CONFIG, 0, "ort", value={**ORT_FILE, "sha256": "xyz"})),
        r"configurations\[0\]\.ort\.sha256: expected a string matching",
    ),
}


@pytest.mark.parametrize(("mutate", "message"), BAD.values(), ids=BAD.keys())
def test_bad_manifest_names_file_and_path(tmp_path: Path, mutate: Mutation, message: str) -> None:
    data = manifest_dict()
    mutate(data)
    path = tmp_path / "bundle" / "manifest.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path.parent)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert caught.match(message)


def test_a_manifest_symlinked_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    """Model files that resolve outside the bundle are refused; the manifest itself is too."""
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(manifest_dict()))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"manifest\.json: a symlink out of the bundle"):
        load_manifest(bundle)


def test_non_finite_numbers_are_refused() -> None:
    data = manifest_dict()
    data["configurations"][0]["devices"]["pixel4"]["latency_ms"] = float("nan")
    with pytest.raises(
        ManifestError,
        match=r"^m\.json: configurations\[0\]\.devices\.pixel4\.latency_ms: expected a number > 0 and <= 1e\+12, got nan$",
    ):
        Manifest.from_dict(data, source="m.json")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ManifestError, match=r"^m\.json: expected an object, got a list$"):
        Manifest.from_dict([1], source="m.json")


def test_invalid_json_and_missing_manifest_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"schema_version": 1,\n  "name": }')
    with pytest.raises(
        ManifestError,
        match=rf"^{re.escape(str(tmp_path / 'manifest.json'))}: not valid JSON \(.* at line 2 column 11\)",
    ):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match=rf"^{re.escape(str(tmp_path / 'nowhere'))}: no such file"):
        load_manifest(tmp_path / "nowhere")


def test_verify_files_accepts_a_written_bundle(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b")
    verify_files(bundle, load_manifest(bundle))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), r"models/small\.onnx: missing \(configuration 'small'\)"),
        (
            lambda p: p.write_bytes(p.read_bytes()[:-1]),
            r"models/small\.onnx: \d+ bytes, the manifest says \d+",
        ),
        (
            lambda p: p.write_bytes(_flip_last_byte(p.read_bytes())),
            r"models/small\.onnx: sha256 [0-9a-f]{64}, the manifest says",
        ),
    ],
    ids=["missing", "size", "sha256"],
)
def test_verify_files_names_the_damaged_file(
    tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    bundle = write_bundle(tmp_path / "b")
    manifest = load_manifest(bundle)
    path = bundle / "models" / "small.onnx"
    damage(path)
    with pytest.raises(ManifestError, match=message):
        verify_files(bundle, manifest)


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def test_a_symlink_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b")
    manifest = load_manifest(bundle)
    outside = tmp_path / "outside.onnx"
    (bundle / "models" / "tiny.onnx").rename(outside)
    (bundle / "models" / "tiny.onnx").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"configuration 'tiny': models/tiny\.onnx is outside the bundle"):
        configuration_path(bundle, manifest.configuration("tiny"))
    with pytest.raises(ManifestError, match="outside the bundle"):
        verify_files(bundle, manifest)


def test_a_version_1_manifest_loads_as_onnx_only_and_round_trips() -> None:
    data = manifest_dict()
    manifest = Manifest.from_dict(copy.deepcopy(data))
    assert manifest.schema_version == 1 and manifest.formats == ("onnx",)
    assert manifest.ort_operators is None and all(c.ort is None for c in manifest.configurations)
    assert manifest.to_dict() == data  # no ort keys appear
    with pytest.raises(ManifestError, match=r"configuration 'big' has no ORT format model"):
        configuration_path("b", manifest.configuration("big"), "ort")


def test_a_version_2_manifest_with_ort_models_round_trips() -> None:
    data = manifest_dict()
    data["schema_version"] = 2
    for i, config in enumerate(data["configurations"]):
        config["ort"] = {**ORT_FILE, "file": f"models/{config['id']}.ort", "bytes": 100 + i}
    data["ort_operators"] = {**ORT_FILE, "file": "required_operators_and_types.config"}
    manifest = Manifest.from_dict(copy.deepcopy(data))
    assert manifest.formats == ("onnx", "ort")
    assert manifest.configuration("small").model("ort").file == "models/small.ort"
    assert manifest.configuration("small").model("onnx").file == "models/small.onnx"
    assert manifest.to_dict() == data


def test_three_rows_helper_is_valid() -> None:
    assert len(Manifest.from_dict(manifest_dict(THREE)).configurations) == 3

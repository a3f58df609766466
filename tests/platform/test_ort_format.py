"""ORT format models in a bundle, on real ONNX Runtime: the same outputs as the ONNX models, listed
with their hashes, refused when changed, and loadable by format. The bundle is the runtime tests'
three Gemm configurations, the smallest one with int8 weights (DequantizeLinear + declared session
config), converted by `add_ort_models` as `adacomp export` does (the full export is checked in
test_supernet_flow.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from adacomp.platform.cli.main import main
from adacomp.platform.supernet.ort_format import OPERATORS_CONFIG, add_ort_models
from adacomp.runtime import AdaptiveModel, Manifest, ManifestError, file_sha256, load_manifest, verify_files
from adacomp.runtime.session import declared_session_config, open_session
from adacomp.search_spaces.techniques.quantize import int8_weights
from tests.runtime.bundles import IN_FEATURES, gemm_model, write_bundle

IDS = ("big", "small", "tiny")


def ort_bundle(root: Path) -> Path:
    """write_bundle's bundle with `tiny` at int8 weights, plus ORT models and the manifest v2."""
    bundle = write_bundle(root)
    model = onnx.load_from_string(gemm_model(2))
    model.graph.node[0].name = "fc"
    (bundle / "models" / "tiny.onnx").write_bytes(int8_weights(model, ["fc"]).SerializeToString())
    data = json.loads((bundle / "manifest.json").read_text())
    data["schema_version"] = 2
    configs = data["configurations"]
    for config in configs:
        blob = (bundle / config["file"]).read_bytes()
        config["sha256"], config["bytes"] = hashlib.sha256(blob).hexdigest(), len(blob)
    models, operators = add_ort_models(bundle, [c["file"] for c in configs])
    for config, ort_model in zip(configs, models, strict=True):
        config["ort"] = ort_model.to_dict()
    data["ort_operators"] = operators.to_dict()
    Manifest.from_dict(data)  # valid
    (bundle / "manifest.json").write_text(json.dumps(data, indent=2))
    return bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ort_bundle(tmp_path_factory.mktemp("ort") / "bundle")


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, IN_FEATURES)).astype(np.float32)


def test_every_ort_model_gives_the_onnx_models_outputs(bundle: Path, x: np.ndarray) -> None:
    manifest = load_manifest(bundle)
    assert declared_session_config(bundle / "models" / "tiny.onnx")  # the int8 one asks for folding
    for config in manifest.configurations:
        assert config.ort is not None
        onnx_out = open_session(bundle / config.file).run(None, {"input": x})[0]
        ort_out = open_session(bundle / config.ort.file).run(None, {"input": x})[0]
        np.testing.assert_allclose(ort_out, onnx_out, rtol=1e-5, atol=1e-6, err_msg=config.id)


def test_the_runtime_loads_either_format(bundle: Path, x: np.ndarray) -> None:
    models = {fmt: AdaptiveModel(bundle, "pixel4", model_format=fmt) for fmt in ("onnx", "ort")}
    for config_id in IDS:
        outputs = {}
        for fmt, model in models.items():
            model.switch_to(config_id)
            outputs[fmt] = model.run(x)
        np.testing.assert_allclose(outputs["ort"], outputs["onnx"], rtol=1e-5, atol=1e-6, err_msg=config_id)
    assert models["ort"].model_format == "ort" and models["onnx"].model_format == "onnx"
    with pytest.raises(ValueError, match=r"model_format: expected one of onnx, ort, got 'tflite'"):
        AdaptiveModel(bundle, model_format="tflite")  # type: ignore[arg-type]


def test_the_manifest_lists_both_files_of_each_configuration_with_their_hashes(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    assert manifest.schema_version == 2 and manifest.formats == ("onnx", "ort")
    for config_id, config in zip(IDS, manifest.configurations, strict=True):
        assert config.file == f"models/{config_id}.onnx" and config.ort is not None
        assert config.ort.file == f"models/{config_id}.ort"
        for entry in (config.onnx, config.ort):
            path = bundle / entry.file
            assert entry.sha256 == file_sha256(path) and entry.bytes == path.stat().st_size
    operators = manifest.ort_operators
    assert operators is not None and operators.file == OPERATORS_CONFIG
    assert operators.sha256 == file_sha256(bundle / OPERATORS_CONFIG)
    verify_files(bundle, manifest)
    # nothing but the models, their ORT twins, the config and the manifest
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert files == sorted(
        ["manifest.json", OPERATORS_CONFIG, *(f"models/{i}.{ext}" for i in IDS for ext in ("onnx", "ort"))]
    )


def test_the_operator_config_lists_the_ops_and_types_of_the_models(bundle: Path) -> None:
    text = (bundle / OPERATORS_CONFIG).read_text()
    ops = [line for line in text.splitlines() if line.startswith("ai.onnx;")]
    assert ops, text
    assert 'Gemm{"inputs": {"0": ["float"]}}' in ops[0]  # type reduction: the types Gemm needs
    # tiny's int8 weights were folded at conversion, as its metadata asks: no DequantizeLinear left
    assert "DequantizeLinear" not in text
    header = [line for line in text.splitlines() if line.startswith("# - ")]
    assert header == [f"# - models/{i}.ort" for i in sorted(IDS)]  # bundle-relative, no build path
    assert str(bundle.parent) not in text


def test_conversion_writes_nothing_outside_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    ort_bundle(tmp_path / "bundle")
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path)) == ["bundle", "cwd"]


def test_a_tampered_ort_model_is_refused_in_one_line(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = shutil.copytree(bundle, tmp_path / "damaged")
    path = damaged / "models" / "small.ort"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 1
    path.write_bytes(bytes(blob))
    message = r"models/small\.ort: sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64} \(configuration 'small', ORT format;"
    with pytest.raises(ManifestError, match=message) as caught:
        AdaptiveModel(damaged, model_format="ort")
    assert "\n" not in str(caught.value)
    with pytest.raises(ManifestError, match=message):
        verify_files(damaged, load_manifest(damaged))
    AdaptiveModel(damaged, model_format="onnx")  # serves ONNX: checks the ONNX files, which are intact
    assert main(["runtime", "simulate", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "small.ort: sha256" in err


def test_a_device_with_only_the_ort_files_serves_them(bundle: Path, tmp_path: Path, x: np.ndarray) -> None:
    slim = shutil.copytree(bundle, tmp_path / "slim")
    for onnx_file in (slim / "models").glob("*.onnx"):
        onnx_file.unlink()
    (slim / OPERATORS_CONFIG).unlink()  # a build input, not needed at run time
    model = AdaptiveModel(slim, "pixel4", model_format="ort")
    model.switch_to("tiny")
    assert model.run(x).shape == (4, 10)
    with pytest.raises(ManifestError, match=r"models/big\.onnx: missing \(configuration 'big'\)"):
        AdaptiveModel(slim, model_format="onnx")


def test_a_version_1_bundle_loads_as_onnx_and_refuses_ort(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "v1")
    assert AdaptiveModel(bundle).model_format == "onnx"
    with pytest.raises(
        ManifestError, match=r"v1: no ort models in this bundle \(it has onnx; export it again"
    ):
        AdaptiveModel(bundle, model_format="ort")

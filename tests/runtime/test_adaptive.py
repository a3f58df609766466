"""AdaptiveModel on real ONNX Runtime sessions: switches load, cached switches are recorded as such."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adacomp.runtime import AdaptiveModel, Context, ManifestError, Selector, load_manifest
from tests.runtime.bundles import CLASSES, IN_FEATURES, gemm_weights, write_bundle

RELAXED, TIGHT = Context(latency_budget_ms=20.0), Context(latency_budget_ms=7.0)  # big / small


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle"))


def expected_logits(x: np.ndarray, seed: int) -> np.ndarray:
    weight, bias = gemm_weights(seed)
    return x @ weight + bias


def test_adapt_switches_and_runs_the_selected_configuration(bundle: Path) -> None:
    model = AdaptiveModel(bundle, "pixel4")
    x = np.random.default_rng(0).standard_normal((5, IN_FEATURES)).astype(np.float32)

    assert model.adapt(RELAXED).id == "big"
    out = model.run(x)
    assert out.shape == (5, CLASSES) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected_logits(x, 0), rtol=1e-4, atol=1e-4)

    selection = model.adapt(TIGHT)
    assert selection.id == "small" and selection.switched
    np.testing.assert_allclose(model.run(x), expected_logits(x, 1), rtol=1e-4, atol=1e-4)
    assert model.adapt(RELAXED).id == "big"
    model.adapt(RELAXED)  # no switch, no event

    events = model.switches
    assert [(e.from_id, e.to_id, e.cached) for e in events] == [
        (None, "big", False),
        ("big", "small", False),
        ("small", "big", True),
    ]
    assert all(e.seconds > 0 for e in events)
    assert events[2].seconds < events[0].seconds  # a cache hit is a dict lookup, a load parses a file
    assert model.loaded == ("small", "big") and model.current_id == "big"


def test_a_cache_of_one_reloads(bundle: Path) -> None:
    model = AdaptiveModel(bundle, "pixel4", cache_size=1)
    for context in (RELAXED, TIGHT, RELAXED):
        model.adapt(context)
    assert [e.cached for e in model.switches] == [False, False, False]
    assert model.loaded == ("big",)


def test_switch_to_is_explicit_and_tells_the_selector(bundle: Path) -> None:
    model = AdaptiveModel(bundle, "pixel4")
    event = model.switch_to("tiny")
    assert event is not None and event.to_id == "tiny" and not event.cached
    assert model.switch_to("tiny") is None
    assert model.selector.current is not None and model.selector.current.id == "tiny"
    # tiny still fits and big is better by far more than the margin: the selector moves on
    assert model.adapt(RELAXED).id == "big"
    with pytest.raises(ManifestError, match="unknown configuration 'huge'"):
        model.switch_to("huge")


def test_run_needs_an_active_configuration_and_the_bundle_input_shape(bundle: Path) -> None:
    model = AdaptiveModel(bundle)
    assert model.device == "pixel4"  # the manifest's first
    with pytest.raises(RuntimeError, match=r"call adapt\(\) or switch_to\(\) first"):
        model.run(np.zeros((1, IN_FEATURES)))
    model.adapt(Context())
    assert model.run(np.zeros((2, IN_FEATURES), dtype=np.float64)).shape == (2, CLASSES)  # cast to float32
    with pytest.raises(ValueError, match=r"input shape \(2, 63\) does not match the bundle's Nx64"):
        model.run(np.zeros((2, 63)))


def test_a_given_selector_must_match(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    model = AdaptiveModel(bundle, selector=Selector(manifest, "host", margin=0.1))
    assert model.device == "host" and model.selector.margin == 0.1
    with pytest.raises(ValueError, match="the selector is for device 'host', not 'pixel4'"):
        AdaptiveModel(bundle, "pixel4", selector=Selector(manifest, "host"))


def test_a_damaged_bundle_is_refused_before_serving(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b")
    data = json.loads((bundle / "manifest.json").read_text())
    data["configurations"][1]["sha256"] = "f" * 64
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"models/small\.onnx: sha256 .* the manifest says f{64}"):
        AdaptiveModel(bundle, "pixel4")
    AdaptiveModel(bundle, "pixel4", verify=False)  # for a bundle checked once at install time

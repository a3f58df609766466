"""Calibration's parts: the generated models, passes and the fastest kept, the noise floor and
the cap it puts on what the report claims, adaptive-sampling weights. The whole command runs on
this host in tests/test_readme.py (README's calibrate commands)."""

from __future__ import annotations

import random

import torch
from torch import nn

from adacomp.device_farm import open_farm
from adacomp.device_farm.profiles import load_profile
from adacomp.device_farm.settings import MeasureSettings
from adacomp.platform.ops.calibrate import _fmt, block_weights, measure_models, noise_floor
from adacomp.platform.ops.calibration_models import BLOCKS, CalibrationModel, calibration_models, random_plan
from adacomp.platform.ops.calibration_progress import Books
from adacomp.search_spaces import compress
from tests.helpers.onnx_exports import exported


def test_noise_floor_of_identical_measurements_is_perfect_agreement() -> None:
    floor = noise_floor([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert floor["within_10"] == 1.0 and floor["median_gap"] == 0.0 and floor["kendall_tau"] == 1.0


def test_the_report_never_claims_more_than_the_device_agrees_with_itself() -> None:
    noise = {"within_10": 0.8, "within_20": 0.95, "kendall_tau": 0.9, "mape": 0.05}
    assert _fmt("within_10", 0.93, noise) == "~80.0 % (noise floor)"
    assert _fmt("within_10", 0.5, noise) == "50.0 %"
    assert _fmt("mape", 0.02, noise) == "~5.0 % (noise floor)"
    assert _fmt("kendall_tau", 0.95, noise) == "~0.900 (noise floor)"
    assert _fmt("within_10", 0.93, {}) == "93.0 %"


def test_adaptive_sampling_weights_the_blocks_of_the_worst_kind() -> None:
    weights = block_weights({"depthwise_conv": 0.4, "conv": 0.1})
    assert set(weights) == set(BLOCKS)
    assert weights["depthwise"] > weights["conv"] > weights["pool"] == 1.0


def test_measured_in_passes_keeps_the_fastest_and_every_pass() -> None:
    """On an emulated device (deterministic) every pass agrees; the bookkeeping is what is checked."""
    farm = open_farm(None, store=None)
    models = [
        CalibrationModel("cnn", "random", exported("cnn")),
        CalibrationModel("int8", "random", exported("cnn:int8")),
    ]
    settings = MeasureSettings()
    measured = measure_models(
        farm, "pixel4", models, load_profile("pixel4"), settings, Books(), kernels=False, passes=3
    )
    assert [m.name for m in measured] == ["cnn", "int8"]
    for m in measured:
        assert len(m.passes_ms) == 3 and m.latency_ms == min(m.passes_ms) and m.kernel_ms is None
    assert measured[1].latency_ms < measured[0].latency_ms  # int8 kernels on the Pixel 4


def test_generated_models_cover_families_and_precisions() -> None:
    models = list(calibration_models(4, seed=3))
    assert len({m.name for m in models}) == 4
    assert {m.family for m in models} >= {"zoo"}
    assert any(m.name.endswith((":int8", ":fp16", ":fp32")) for m in models)
    again = list(calibration_models(4, seed=3))
    assert [m.name for m in again] == [m.name for m in models]  # seeded


def test_random_plans_build_where_pruning_rules_out_the_next_layers_fire(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    """A calibration run died on a random plan that pruned conv1's channels and chose `fire` for
    conv2, which then had nothing to squeeze: random plans are repaired as the search's are."""
    rng = random.Random(38)
    plans = [random_plan(cnn, cnn_input, rng) for _ in range(150)]
    pruned = [
        plan
        for plan in plans
        if any(s.technique == "channel_prune" for s in plan.steps_for("features.conv1"))
    ]
    assert pruned  # some leave conv2 fewer than the 4 input channels fire needs
    for plan in plans:
        assert compress(cnn, plan, cnn_input)(cnn_input).shape == (4, 10)

"""Each technique on real layers: identity-like settings reproduce outputs, sizes shrink as expected."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from adacomp.search_spaces import CompressionPlan, Step, compress, export_onnx, get_technique, trace_sites
from adacomp.search_spaces.facts import encoded_weight_bytes, storage_bytes
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques import Encoding
from adacomp.search_spaces.techniques.channel_prune import kept_channels
from adacomp.search_spaces.techniques.magnitude_prune import bake_pruning, is_magnitude_pruned


def _site(layer: nn.Module, x: torch.Tensor) -> LayerSite:
    wrapper = nn.Sequential(layer)
    return trace_sites(wrapper, x)["0"]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- low rank ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (nn.Linear(24, 16), torch.randn(5, 24)),
        (nn.Conv2d(6, 10, 3, padding=1, stride=2), torch.randn(2, 6, 9, 9)),
        (nn.Conv1d(4, 12, 5, padding=2), torch.randn(2, 4, 30)),
    ],
)
def test_low_rank_full_rank_reproduces_outputs(layer: nn.Module, x: torch.Tensor) -> None:
    replaced = get_technique("low_rank").apply(layer, _site(layer, x), rank_fraction=1.0)
    torch.testing.assert_close(replaced(x), layer(x), atol=1e-5, rtol=1e-4)


def test_low_rank_shrinks_parameters_as_predicted() -> None:
    layer, x = nn.Linear(256, 128), torch.randn(2, 256)
    replaced = get_technique("low_rank").apply(layer, _site(layer, x), rank_fraction=0.25)
    rank = 32  # ceil(0.25 * min(256, 128))
    assert _params(replaced) == rank * 256 + 128 * rank + 128


def test_low_rank_error_shrinks_with_rank() -> None:
    layer, x = nn.Linear(64, 64), torch.randn(16, 64)
    site = _site(layer, x)
    errors = [
        (get_technique("low_rank").apply(layer, site, rank_fraction=f)(x) - layer(x)).norm().item()
        for f in (0.1, 0.5, 0.9)
    ]
    assert errors[0] > errors[1] > errors[2]


# --- depthwise separable -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "x", "multiplier"),
    [
        (nn.Conv1d(3, 8, 3, padding=1), torch.randn(2, 3, 16), 3),
        (nn.Conv2d(3, 8, 2, stride=2), torch.randn(2, 3, 8, 8), 4),
    ],
)
def test_depthwise_separable_at_full_multiplier_reproduces_outputs(
    layer: nn.Module, x: torch.Tensor, multiplier: int
) -> None:
    replaced = get_technique("depthwise_separable").apply(layer, _site(layer, x), multiplier=multiplier)
    torch.testing.assert_close(replaced(x), layer(x), atol=1e-5, rtol=1e-4)


def test_depthwise_separable_is_exact_for_separable_kernels() -> None:
    layer, x = nn.Conv2d(4, 6, 3, padding=1), torch.randn(2, 4, 7, 7)
    with torch.no_grad():  # rank one per input channel: W[o, c] = p[o, c] * d[c]
        layer.weight.copy_(torch.randn(6, 4, 1, 1) * torch.randn(1, 4, 3, 3))
    replaced = get_technique("depthwise_separable").apply(layer, _site(layer, x), multiplier=1)
    torch.testing.assert_close(replaced(x), layer(x), atol=1e-5, rtol=1e-4)
    assert _params(replaced) == 4 * 9 + 4 * 6 + 6


# --- fire ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
def test_fire_at_full_squeeze_without_1x1_reproduces_outputs(stride: int) -> None:
    layer, x = nn.Conv2d(4, 6, 3, padding=1, stride=stride), torch.randn(2, 4, 8, 8)
    replaced = get_technique("fire").apply(layer, _site(layer, x), squeeze_ratio=2.0, expand_1x1_fraction=0.0)
    torch.testing.assert_close(replaced(x), layer(x), atol=1e-5, rtol=1e-4)


def test_fire_squeezes_and_splits_the_expand_channels() -> None:
    layer, x = nn.Conv2d(32, 32, 3, padding=1), torch.randn(2, 32, 6, 6)
    fire = get_technique("fire").apply(layer, _site(layer, x), squeeze_ratio=0.25, expand_1x1_fraction=0.5)
    assert fire.squeeze.out_channels == 8  # 2 * round(0.25 * 32 / 2)
    assert fire.expand1.out_channels == 16 and fire.expand_k.out_channels == 16
    assert _params(fire) < _params(layer) / 3


def test_fire_refuses_convs_without_same_padding() -> None:
    layer, x = nn.Conv2d(4, 6, 3), torch.randn(1, 4, 8, 8)
    assert "same" in get_technique("fire").why_not(layer, _site(layer, x))


# --- global average pooling head ------------------------------------------------------------
def test_gap_head_is_exact_on_spatially_constant_maps() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 3 * 3, 5))
    x = torch.randn(4, 8, 1, 1).expand(4, 8, 3, 3).contiguous()
    site = trace_sites(model, x)["1"]
    assert site.flattened_from == (8, 3, 3)
    head = get_technique("gap_head").apply(model[1], site)
    torch.testing.assert_close(head(model[0](x)), model(x), atol=1e-5, rtol=1e-4)
    assert _params(head) == 8 * 5 + 5  # 9x fewer weights


def test_gap_head_needs_a_flattened_map() -> None:
    layer, x = nn.Linear(10, 3), torch.randn(2, 10)
    assert "not a flattened" in get_technique("gap_head").why_not(layer, _site(layer, x))


# --- magnitude pruning -----------------------------------------------------------------------
def test_magnitude_prune_zeros_the_smallest_weights_and_keeps_them_zero() -> None:
    layer, x = nn.Linear(40, 20), torch.randn(8, 40)
    pruned = get_technique("magnitude_prune").apply(layer, _site(layer, x), sparsity=0.75)
    assert is_magnitude_pruned(pruned)
    weight = pruned.weight.detach()
    assert (weight == 0).sum().item() == 600
    kept = layer.weight.detach().abs()[weight != 0]
    assert kept.min() >= layer.weight.detach().abs()[weight == 0].max()
    optimizer = torch.optim.Adam(pruned.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        pruned(x).pow(2).sum().backward()
        optimizer.step()
    assert (pruned.weight.detach() == 0).sum().item() == 600


def test_magnitude_prune_at_zero_sparsity_reproduces_outputs() -> None:
    layer, x = nn.Conv2d(3, 4, 3), torch.randn(2, 3, 6, 6)
    pruned = get_technique("magnitude_prune").apply(layer, _site(layer, x), sparsity=0.0)
    torch.testing.assert_close(pruned(x), layer(x))


def test_baking_one_copy_leaves_other_copies_working() -> None:
    import copy

    layer, x = nn.Linear(10, 4), torch.randn(2, 10)
    pruned = get_technique("magnitude_prune").apply(layer, _site(layer, x), sparsity=0.5)
    baked = bake_pruning(copy.deepcopy(pruned))
    assert type(baked) is nn.Linear
    torch.testing.assert_close(baked(x), pruned(x))


# --- channel pruning (a lone layer; whole-model pruning is in test_compress) ------------------
def test_channel_prune_keeps_the_strongest_filters() -> None:
    layer, x = nn.Conv2d(3, 8, 3), torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        layer.weight[[1, 4]] *= 10
    pruned = get_technique("channel_prune").apply(layer, _site(layer, x), ratio=0.75)
    assert pruned.out_channels == 2
    torch.testing.assert_close(pruned(x), layer(x)[:, [1, 4]])


@pytest.mark.parametrize(
    ("original", "ratio", "kept"),
    [
        (64, 0.3, 48),
        (64, 0.45, 32),
        (96, 0.9, 8),
        (144, 0.5, 72),
        (16, 0.25, 16),
        (16, 0.4, 8),
        (8, 0.5, 4),
        (50, 0.5, 25),
    ],
)
def test_wide_layers_keep_channel_counts_that_suit_the_kernels(
    original: int, ratio: float, kept: int
) -> None:
    """Multiples of 8 where the layer has at least 16 channels and is itself a multiple of 8,
    unless fewer than 8 are kept (then the count asked for)."""
    assert kept_channels(original, ratio) == kept


def _nchwc_convs(onnx_bytes: bytes, tmp_path: Path) -> int:
    """Convs onnxruntime's CPU provider runs in its blocked NCHWc layout after optimising."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimised.onnx")).graph
    return sum(node.op_type == "Conv" and node.domain == "com.microsoft.nchwc" for node in graph.node)


def test_a_pruned_conv_stays_on_the_blocked_layout(tmp_path: Path) -> None:
    """Pruned 64 -> 45 channels (not a multiple of 8), the conv reading them falls back to NCHW;
    rounded to 48 both stay on NCHWc, where onnxruntime runs convs up to 4x faster here."""
    model = nn.Sequential(nn.Conv2d(8, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1)).eval()
    x = torch.randn(2, 8, 16, 16)
    if _nchwc_convs(export_onnx(model, x), tmp_path) < 2:
        pytest.skip("this CPU's onnxruntime has no NCHWc kernels (not x86 with AVX2)")
    plan = CompressionPlan.from_mapping({"0": [Step.of("channel_prune", ratio=0.3)]})
    pruned = compress(model, plan, x)
    assert pruned[0].out_channels == 48 and pruned[2].in_channels == 48
    assert _nchwc_convs(export_onnx(pruned, x), tmp_path) == 2
    unaligned = nn.Sequential(
        nn.Conv2d(8, 45, 3, padding=1), nn.ReLU(), nn.Conv2d(45, 64, 3, padding=1)
    ).eval()
    assert _nchwc_convs(export_onnx(unaligned, x), tmp_path) < 2  # what rounding avoids: 45 in falls back


# --- storage encoding ---------------------------------------------------------------------------
def test_encoded_bytes_by_precision_and_sparsity() -> None:
    assert encoded_weight_bytes(1000, 1000, Encoding()) == 4000
    assert encoded_weight_bytes(1000, 1000, Encoding(value_bits=16)) == 2000
    assert encoded_weight_bytes(1000, 1000, Encoding(value_bits=8)) == 1000
    # 99 % sparse, fp32: a coordinate list with 2-byte indices beats the bitmask.
    assert encoded_weight_bytes(1000, 10, Encoding(sparse=True)) == 10 * (2 + 4)
    # 90 % sparse, fp32: the bitmask (125 B) + values (400 B) beats the list (600 B).
    assert encoded_weight_bytes(1000, 100, Encoding(sparse=True)) == 125 + 400
    # 50 % sparse, int8: bitmask (125 B) + values (500 B) beats the coordinate list (1500 B).
    assert encoded_weight_bytes(1000, 500, Encoding(value_bits=8, sparse=True)) == 125 + 500
    # barely sparse: dense storage is cheaper and is used.
    assert encoded_weight_bytes(1000, 990, Encoding(sparse=True)) == 4000


def test_storage_shrinks_by_the_expected_factor() -> None:
    from adacomp.search_spaces import CompressionPlan, Step, compress

    model, x = nn.Sequential(nn.Linear(256, 256, bias=False)), torch.randn(2, 256)
    dense = storage_bytes(model)
    assert dense == 256 * 256 * 4
    int8 = CompressionPlan.from_mapping({"0": [Step.of("quantize", precision="int8")]})
    assert storage_bytes(compress(model, int8, x), int8) == 256 * 256 + 256 * 5
    per_tensor = CompressionPlan.from_mapping({"0": [Step.of("quantize", precision="int8_per_tensor")]})
    assert storage_bytes(compress(model, per_tensor, x), per_tensor) == 256 * 256 + 5
    fp16 = CompressionPlan.from_mapping({"0": [Step.of("quantize", precision="fp16")]})
    assert storage_bytes(compress(model, fp16, x), fp16) == dense // 2
    half = CompressionPlan.from_mapping({"0": [Step.of("low_rank", rank_fraction=0.25)]})
    assert storage_bytes(compress(model, half, x), half) == dense // 2  # 2 * 64 * 256 weights
    sparse = CompressionPlan.from_mapping({"0": [Step.of("magnitude_prune", sparsity=0.9)]})
    nonzero = 256 * 256 - round(0.9 * 256 * 256)
    bitmask = 256 * 256 // 8
    assert storage_bytes(compress(model, sparse, x), sparse) == bitmask + nonzero * 4
    assert math.isclose(dense / storage_bytes(compress(model, sparse, x), sparse), 7.6, rel_tol=0.01)

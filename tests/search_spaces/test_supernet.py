"""The supernet: layout analysis, exact extraction, configurations as data, resumable training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import export_onnx
from adacomp.search_spaces.supernet import (
    EnsembleBudget,
    SubnetConfig,
    Supernet,
    SupernetOptions,
    recalibrate_batchnorm,
    train_supernet,
)
from adacomp.search_spaces.supernet.elastic import is_elastic
from adacomp.tasks.datasets import TensorPairDataset
from adacomp.tasks.mobile import MobileNetV2
from adacomp.tasks.resnet import CifarResNet
from adacomp.tasks.training import predict_onnx

STATIC_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Identity,
)


@pytest.fixture
def mobilenet() -> nn.Module:
    torch.manual_seed(0)
    return MobileNetV2(width_mult=0.25).eval()


def _models(request: pytest.FixtureRequest) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    return {
        "cnn": (request.getfixturevalue("cnn"), request.getfixturevalue("cnn_input")),
        "residual": (request.getfixturevalue("residual_net"), request.getfixturevalue("cnn_input")),
        "conv1d": (request.getfixturevalue("net1d"), request.getfixturevalue("input1d")),
        "mobilenet": (request.getfixturevalue("mobilenet"), torch.randn(2, 3, 32, 32)),
        "resnet8": (_resnet8(), torch.randn(2, 3, 32, 32)),
        "resnet8-streams": (_resnet8(), torch.randn(2, 3, 32, 32)),
        "residual-streams": (request.getfixturevalue("residual_net"), request.getfixturevalue("cnn_input")),
    }


def _options(name: str) -> SupernetOptions:
    """`-streams` cases have elastic residual streams (supernet.residual_width)."""
    return SupernetOptions(residual_width=name.endswith("-streams"))


def _resnet8() -> nn.Module:
    torch.manual_seed(0)
    return CifarResNet(width_mult=0.5).eval()


ALL = ["cnn", "residual", "conv1d", "mobilenet", "resnet8", "resnet8-streams", "residual-streams"]


@pytest.mark.parametrize("name", ALL)
def test_largest_configuration_computes_the_original_model(name: str, request: pytest.FixtureRequest) -> None:
    model, x = _models(request)[name]
    supernet = Supernet.build(model, x, _options(name))
    with torch.no_grad():
        torch.testing.assert_close(supernet(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_extracted_static_models_match_the_elastic_forward(name: str, request: pytest.FixtureRequest) -> None:
    model, x = _models(request)[name]
    supernet = Supernet.build(model, x, _options(name))
    rng = random.Random(0)
    configs = [
        supernet.space.largest(),
        supernet.space.smallest(),
        *(supernet.space.sample(rng) for _ in range(6)),
    ]
    for config in configs:
        with torch.no_grad(), supernet.active(config):
            elastic = supernet(x)
        static = supernet.extract(config)
        assert not any(is_elastic(m) for m in static.modules()), config
        leaves = [m for m in static.modules() if not any(True for _ in m.children())]
        assert all(isinstance(m, STATIC_TYPES) for m in leaves), {type(m).__name__ for m in leaves}
        with torch.no_grad():
            torch.testing.assert_close(static(x), elastic, rtol=1e-4, atol=1e-5, msg=str(config))


def test_smaller_configurations_have_fewer_parameters(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    supernet = Supernet.build(cnn, cnn_input)

    def size(config: SubnetConfig) -> int:
        return sum(p.numel() for p in supernet.extract(config).parameters())

    largest, smallest = size(supernet.space.largest()), size(supernet.space.smallest())
    assert smallest < largest / 5
    assert largest == sum(p.numel() for p in cnn.parameters())  # dense again at full rank


def test_an_extracted_model_exports_and_runs_in_onnxruntime(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    config = supernet.space.sample(random.Random(3))
    static = supernet.extract(config)
    onnx_model = export_onnx(static, cnn_input)
    with torch.no_grad():
        expected = static(cnn_input).numpy()
    np.testing.assert_allclose(predict_onnx(onnx_model, cnn_input.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_layout_reports_what_is_not_elastic_and_why(residual_net: nn.Module, cnn_input: torch.Tensor) -> None:
    layout = Supernet.build(residual_net, cnn_input).layout  # residual streams whole: the default
    fixed = dict(layout.fixed)
    assert "residual" in fixed["stem"]  # its channels meet the block's output in an add
    assert "outputs" in fixed["fc"]
    assert [g.producer for g in layout.groups] == ["head"]
    assert layout.groups[0].consumers == (("fc", 1),)  # pooled to 1x1 before flattening
    assert layout.blocks == ("block",)  # shape-preserving and owns its residual add
    assert "head" in layout.report()


def test_a_residual_stream_is_one_width_of_every_producer_the_add_joins(
    residual_net: nn.Module, cnn_input: torch.Tensor
) -> None:
    layout = Supernet.build(residual_net, cnn_input, SupernetOptions(residual_width=True)).layout
    stream = next(g for g in layout.groups if g.producer == "stem")
    assert stream.joined == ("block.conv",)  # x + bn(conv(x)): one set of channels
    assert {"block.bn"} <= set(stream.channelwise)
    assert {name for name, _ in stream.consumers} == {"block.conv", "head"}
    assert layout.blocks == ("block",)  # the stream passes through it: skipping it is still identity
    assert "stem (with block.conv)" in layout.report()
    assert "stem" not in dict(layout.fixed)


def test_a_resnet_stage_and_its_shortcut_conv_share_one_width() -> None:
    torch.manual_seed(0)
    model = CifarResNet(width_mult=0.5).eval()
    layout = Supernet.build(model, torch.randn(2, 3, 32, 32), SupernetOptions(residual_width=True)).layout
    stage2 = next(g for g in layout.groups if "stages.stage2.block1.shortcut.conv" in g.producers)
    assert stage2.producers == ("stages.stage2.block1.conv2", "stages.stage2.block1.shortcut.conv")
    stage3 = next(g for g in layout.groups if "stages.stage3.block1.conv2" in g.producers)
    assert ("fc", 1) in stage3.consumers  # read through the pool: the classifier follows the stream
    assert dict(layout.fixed).keys() & {p for g in layout.groups for p in g.producers} == set()


def test_adds_that_cannot_join_keep_their_producers_whole(cnn_input: torch.Tensor) -> None:
    """An add of the model's input (no producer), or of a flattened map, pins the channels."""

    class InputSum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.wide = nn.Conv2d(1, 6, 3, padding=1)
            self.fc = nn.Linear(6 * 8 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.wide(x + self.conv(x))
            out: torch.Tensor = self.fc(h.flatten(1) + h.flatten(1))
            return out

    layout = Supernet.build(InputSum(), cnn_input, SupernetOptions(residual_width=True)).layout
    fixed = {name: why for name, why in layout.fixed if why.startswith("width fixed")}
    assert "residual" in fixed["conv"] and "residual" in fixed["wide"]
    assert not layout.groups


def test_mobilenet_gets_elastic_expansions_and_skippable_blocks(mobilenet: nn.Module) -> None:
    supernet = Supernet.build(mobilenet, torch.randn(2, 3, 32, 32))
    producers = {g.producer for g in supernet.layout.groups}
    assert "blocks.block2.layers.expand.conv" in producers  # inverted-residual hidden width
    group = next(g for g in supernet.layout.groups if g.producer == "blocks.block2.layers.expand.conv")
    assert "blocks.block2.layers.depthwise.conv" in group.channelwise
    assert "blocks.block3" in supernet.layout.blocks and "blocks.block2" not in supernet.layout.blocks


def test_a_residual_added_outside_the_block_is_not_skippable(cnn_input: torch.Tensor) -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.branch = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            out: torch.Tensor = self.fc((h + self.branch(h)).flatten(1))
            return out

    layout = Supernet.build(Outer().eval(), cnn_input).layout
    assert layout.blocks == ()
    assert "added to its input outside" in dict(layout.fixed)["branch"]


def test_untraceable_models_get_a_clear_error(cnn_input: torch.Tensor) -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = self.conv(x)
            return y if y.sum() > 0 else -y  # data-dependent control flow

    with pytest.raises(AdacompError, match=r"torch\.fx cannot trace Branchy"):
        Supernet.build(Branchy().eval(), cnn_input)


def test_options_turn_dimensions_off(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    options = SupernetOptions(rank_fractions=(), precisions=("int8",), alternatives=())
    supernet = Supernet.build(cnn, cnn_input, options)
    assert supernet.layout.rank_layers == () and supernet.space.ranks == {}
    assert supernet.layout.alternatives == () and supernet.space.alternatives == {}
    assert supernet.space.largest().precision == "int8"
    # conv1 (8 channels) and fc1 (32) have four widths; conv2 and conv3 (16 channels) three,
    # since 0.75 of 16 rounds to a whole block of 8, which is all 16.
    assert supernet.space.size == 4 * 3 * 3 * 4
    # With alternatives on, each conv may also run separable and fc1 as a pooled head: one
    # more choice per layer.
    with_alternatives = Supernet.build(
        cnn, cnn_input, SupernetOptions(rank_fractions=(), precisions=("int8",))
    )
    assert with_alternatives.space.size == 4 * 3 * 3 * 4 * 2**4


def test_elastic_widths_suit_the_kernels_like_pruned_channels(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    widths = Supernet.build(cnn, cnn_input).space.widths
    assert widths["features.conv1"] == (2, 4, 6, 8)  # narrower than two blocks: exact
    assert widths["features.conv2"] == (4, 8, 16)  # below one block exact, else whole blocks
    assert widths["fc1"] == (8, 16, 24, 32)


def test_configurations_round_trip_and_are_validated(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    config = supernet.space.sample(random.Random(1))
    again = SubnetConfig.from_dict(json.loads(config.to_json()))
    assert again == config and again.hash == config.hash
    with pytest.raises(AdacompError, match=r"width: unknown layer 'nope'; elastic: features\.conv1"):
        supernet.space.validate(SubnetConfig.of(width={"nope": 3}))
    with pytest.raises(AdacompError, match=r"width\.fc1=99; expected 1\.\.32"):
        supernet.space.validate(SubnetConfig.of(width={"fc1": 99}))
    with pytest.raises(AdacompError, match="precision: 'int4'"):
        SubnetConfig.from_dict({"precision": "int4"})
    filled = supernet.space.validate(SubnetConfig.of(width={"fc1": 8}))
    assert dict(filled.width)["features.conv2"] == 16  # the rest at their largest


def test_batchnorm_recalibration_only_changes_statistics(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    static = supernet.extract(supernet.space.smallest())
    weights = {
        k: v.clone() for k, v in static.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    bn = static.get_submodule("features.bn1")
    before = bn.running_mean.clone()
    recalibrate_batchnorm(static, [torch.randn(16, 1, 8, 8) for _ in range(3)])
    assert not torch.equal(before, bn.running_mean) and not static.training
    for key, value in weights.items():
        assert torch.equal(static.state_dict()[key], value), key


def _data() -> TensorPairDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorPairDataset(
        torch.randn(96, 1, 8, 8, generator=generator), torch.randint(0, 10, (96,), generator=generator)
    )


def test_training_resumed_from_a_checkpoint_equals_an_uninterrupted_run(
    cnn: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    budget = EnsembleBudget(steps=4, batch_size=16, checkpoint_every=2)
    straight = Supernet.build(cnn, cnn_input)
    train_supernet(straight, _data(), budget, seed=3)

    resumed = Supernet.build(cnn, cnn_input)
    train_supernet(
        resumed,
        _data(),
        EnsembleBudget(steps=2, batch_size=16, checkpoint_every=2),
        seed=3,
        checkpoint_dir=tmp_path,
    )
    # A new process would rebuild the supernet from the trained model, then load the checkpoint.
    fresh = Supernet.build(cnn, cnn_input)
    report = train_supernet(fresh, _data(), budget, seed=3, checkpoint_dir=tmp_path)
    assert report.resumed_from == 2 and report.steps == 4 and len(report.log) == 2
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert (tmp_path / "LATEST").read_text() == "step-0000004"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-0000004"]


def test_a_checkpoint_from_other_settings_is_refused(
    cnn: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    train_supernet(supernet, _data(), EnsembleBudget(steps=1, batch_size=16), seed=0, checkpoint_dir=tmp_path)
    with pytest.raises(AdacompError, match="trained with other settings"):
        train_supernet(
            supernet, _data(), EnsembleBudget(steps=2, batch_size=16, lr=0.1), seed=0, checkpoint_dir=tmp_path
        )


def test_ensemble_training_teaches_the_smallest_configuration(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 8, 8, generator=generator)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()  # top half brighter?
    data = TensorPairDataset(x, y)
    # No pooled head: which half is brighter is where the brightness is, which averaging every
    # position away erases (the smallest configuration would run fc1 as one).
    supernet = Supernet.build(cnn, cnn_input, SupernetOptions(alternatives=("depthwise_separable",)))
    smallest = supernet.space.smallest("fp32")

    def accuracy() -> float:
        static = recalibrate_batchnorm(supernet.extract(smallest), list(x.split(64)))
        with torch.no_grad():
            return float((static(x).argmax(1) == y).float().mean())

    before = accuracy()
    train_supernet(supernet, data, EnsembleBudget(steps=150, batch_size=32, lr=3e-3, sampled=0), seed=0)
    assert not supernet.training
    assert accuracy() > max(0.75, before + 0.2)

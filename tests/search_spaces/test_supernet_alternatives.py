"""AdaSpring's alternative operators in the supernet (issue 37, part 3): a conv may run as its
depthwise-separable form, a head reading a flattened map as a global-average-pooling head; each
branch follows the layer's elastic widths, is distilled to the layer's output before ensemble
training, and reads and writes as the technique's own plan step."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import CompressionPlan, Step, compress
from adacomp.search_spaces.sites import weight_modules
from adacomp.search_spaces.supernet import SubnetConfig, Supernet, SupernetOptions
from adacomp.search_spaces.supernet.alternatives import distil_alternatives
from adacomp.search_spaces.supernet.plans import config_of, plan_of
from adacomp.search_spaces.techniques.depthwise_separable import DepthwiseSeparable
from adacomp.search_spaces.techniques.gap_head import GapLinear
from adacomp.tasks.digits import DigitsCNN
from adacomp.tasks.mobile import MobileNetV2
from adacomp.tasks.resnet import CifarResNet


def _weighted(model: nn.Module) -> list[str]:
    return [name for name, _ in weight_modules(model) if name]


def test_which_layers_of_resnet8_mobilenetv2_and_the_digits_cnn_hold_which_alternative() -> None:
    """ResNet-8: every 3x3 conv (stem and both convs of each block) can run separable, its 1x1
    shortcuts cannot (already pointwise), nor its head (read after pooling to one position).
    MobileNetV2: only the stem (its other convs are 1x1 or already depthwise). Digits CNN: its
    three convs separable, fc1 (reads a 64 x 4 x 4 map) as a pooled head."""
    torch.manual_seed(0)
    resnet = Supernet.build(CifarResNet().eval(), torch.randn(2, 3, 32, 32)).layout
    held = {a.name: a.techniques for a in resnet.alternatives}
    convs3x3 = ["stem.conv"] + [f"stages.stage{s}.block1.conv{c}" for s in (1, 2, 3) for c in (1, 2)]
    assert held == {name: ("depthwise_separable",) for name in convs3x3}
    why = dict(resnet.no_alternative)
    assert "already pointwise" in why["stages.stage2.block1.shortcut.conv"]
    assert "not a flattened map of several positions" in why["fc"]
    assert "alternatives: stem.conv (depthwise_separable)" in resnet.report()

    mobilenet = Supernet.build(MobileNetV2(width_mult=0.25).eval(), torch.randn(2, 3, 32, 32)).layout
    assert [a.name for a in mobilenet.alternatives] == ["stem.conv"]

    digits = Supernet.build(DigitsCNN().eval(), torch.randn(2, 1, 8, 8)).layout
    assert {a.name: (a.techniques, a.positions) for a in digits.alternatives} == {
        "features.conv1": (("depthwise_separable",), 1),
        "features.conv2": (("depthwise_separable",), 1),
        "features.conv3": (("depthwise_separable",), 1),
        "fc1": (("gap_head",), 16),
    }


def test_branches_follow_the_widths_and_extract_as_the_techniques_modules(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    config = SubnetConfig.of(
        width={"features.conv2": 8, "features.conv3": 4},
        alternative={"features.conv2": "depthwise_separable", "fc1": "gap_head"},
    )
    static = supernet.extract(config)
    conv2, fc1 = static.get_submodule("features.conv2"), static.get_submodule("fc1")
    assert isinstance(conv2, DepthwiseSeparable) and isinstance(fc1, GapLinear)
    assert conv2.pointwise.out_channels == 8 and conv2.depthwise.in_channels == 8  # conv1 kept 8
    assert fc1.linear.in_features == 4  # conv3's 4 channels, averaged over the map
    with torch.no_grad(), supernet.active(config):
        torch.testing.assert_close(static(cnn_input), supernet(cnn_input), rtol=1e-4, atol=1e-5)
    smallest = supernet.space.smallest()
    assert dict(smallest.alternative) == {a.name: a.techniques[0] for a in supernet.layout.alternatives}
    assert (
        dict(supernet.space.validate(config).rank)["features.conv2"]
        == supernet.space.ranks["features.conv2"][-1]
    )


@pytest.mark.parametrize("name", ["cnn", "residual", "digits"])
def test_a_configuration_with_alternatives_is_the_plan_that_builds_it(
    name: str, request: pytest.FixtureRequest
) -> None:
    """plan_of writes the alternative as the technique's step (depthwise_separable at
    multiplier 1, gap_head), after the layer's channel_prune; compress builds the very modules
    the supernet extracts, with the same outputs, and config_of reads the plan back."""
    torch.manual_seed(0)
    model, x = {
        "cnn": lambda: (request.getfixturevalue("cnn"), request.getfixturevalue("cnn_input")),
        "residual": lambda: (request.getfixturevalue("residual_net"), request.getfixturevalue("cnn_input")),
        "digits": lambda: (DigitsCNN().eval(), torch.randn(4, 1, 8, 8)),
    }[name]()
    supernet = Supernet.build(model, x)
    weighted = _weighted(model)
    rng = random.Random(1)
    seen = 0
    for _ in range(12):
        sampled = supernet.space.sample(rng)
        config = SubnetConfig.of(
            dict(sampled.width), dict(sampled.rank), sampled.skip, "fp32", dict(sampled.alternative)
        )
        plan = plan_of(supernet, config, weighted)
        for layer, technique in config.alternative:
            if not any(layer.startswith(block + ".") for block in config.skip):
                assert plan.steps_for(layer)[-1].technique == technique
                seen += 1
        compressed, extracted = compress(model, plan, x), supernet.extract(config)
        compressed.load_state_dict(extracted.state_dict())  # the same modules, by name
        torch.testing.assert_close(compressed.eval()(x), extracted(x), rtol=1e-4, atol=1e-5)
        back = config_of(supernet, plan, weighted)
        assert {a for a in back.alternative} == {
            a for a in config.alternative if not any(a[0].startswith(b + ".") for b in config.skip)
        }
    assert seen > 0


def test_plans_the_branches_cannot_express_are_refused_naming_the_layer(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    weighted = _weighted(cnn)

    def refused(mapping: dict[str, list[Step]], match: str) -> None:
        with pytest.raises(AdacompError, match=match):
            config_of(supernet, CompressionPlan.from_mapping(mapping), weighted)

    refused(
        {"features.conv2": [Step.of("depthwise_separable", multiplier=2)]},
        r"'features.conv2'.*holds depthwise_separable with multiplier=1 only",
    )
    refused({"fc2": [Step.of("gap_head")]}, r"'fc2'.*holds no gap_head branch here")
    refused(
        {
            "features.conv2": [
                Step.of("low_rank", rank_fraction=0.5),
                Step.of("depthwise_separable", multiplier=1),
            ]
        },
        r"'features.conv2': low_rank and depthwise_separable on one layer",
    )
    without = Supernet.build(cnn, cnn_input, SupernetOptions(alternatives=()))
    with pytest.raises(AdacompError, match=r"holds no depthwise_separable branch here .alternatives: none"):
        config_of(
            without,
            CompressionPlan.from_mapping({"features.conv1": [Step.of("depthwise_separable", multiplier=1)]}),
            weighted,
        )


def test_configurations_without_alternatives_keep_their_json_and_hash() -> None:
    plain = SubnetConfig.of({"a": 4}, {"b": 2}, ("c",), "int8")
    assert plain.to_json() == '{"precision":"int8","rank":{"b":2},"skip":["c"],"width":{"a":4}}'
    with_branch = SubnetConfig.of({"a": 4}, precision="int8", alternative={"d": "gap_head"})
    assert SubnetConfig.from_dict(with_branch.to_dict()) == with_branch
    assert with_branch.hash != SubnetConfig.of({"a": 4}, precision="int8").hash
    with pytest.raises(AdacompError, match=r"configuration.alternative: expected an object of layer name"):
        SubnetConfig.from_dict({"alternative": ["d"]})


def test_distilling_brings_each_branch_closer_to_its_layer_and_touches_nothing_else(
    cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    supernet = Supernet.build(cnn, cnn_input)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    batches = [torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    fits = distil_alternatives(supernet, batches, steps=60)
    assert {(f.layer, f.technique) for f in fits} == {
        (a.name, t) for a in supernet.layout.alternatives for t in a.techniques
    }
    assert all(f.after <= f.before for f in fits) and any(f.after < 0.5 * f.before for f in fits), fits
    after = supernet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".alternatives." in k for k in changed), changed
    again = Supernet.build(cnn, cnn_input)
    assert [(f.before, f.after) for f in distil_alternatives(again, batches, steps=60)] == [
        (f.before, f.after) for f in fits
    ]  # deterministic

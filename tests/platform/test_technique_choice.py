"""`techniques:` in a search config: the search only ever proposes those techniques, and names
that are unknown, or that apply to no layer of the model, are refused in one line up front."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.search.job import search
from adacomp.platform.search.space import restricted_space
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies.plan_space import params_from_plan, plan_from_params, quantizable, suggest
from adacomp.search_spaces import CompressionPlan, SearchSpace, build_space, compress
from adacomp.search_spaces.params import ParamSpec
from adacomp.search_spaces.sites import LayerSite
from adacomp.search_spaces.techniques import Technique, register_technique, unregister_technique


def _config(tmp_path: Path, **changes: object) -> SearchConfig:
    data: dict[str, object] = {
        "name": "only",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "trials": 2,
        "output": {"dir": str(tmp_path / "runs")},
        **changes,
    }
    return SearchConfig.model_validate(data)


def _sampled_plans(space: SearchSpace, count: int) -> Iterator[tuple[optuna.Trial, CompressionPlan]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(count):
        trial = study.ask()
        suggest(trial, space)
        yield trial, plan_from_params(trial.params, space)
        study.tell(trial, 0.0)


def test_a_restricted_space_keeps_only_those_techniques(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    full = build_space(cnn, cnn_input)
    only = full.restricted_to(["fire", "quantize"])
    assert only.techniques() == {"fire", "quantize"} and full.techniques() > only.techniques()
    assert [layer.name for layer in only.layers] == [layer.name for layer in full.layers]  # all quantizable
    assert "fire" not in only.layer("features.conv1").techniques  # still only where it applies
    fire_only = full.restricted_to(["fire"])
    assert [layer.name for layer in fire_only.layers] == ["features.conv2", "features.conv3"]
    assert full.restricted_to(["nothing_here"]).layers == ()


def test_sampled_plans_use_only_the_allowed_techniques(cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    space = build_space(cnn, cnn_input).restricted_to(["channel_prune"])
    assert not quantizable(space)
    used = set()
    for trial, plan in _sampled_plans(space, 20):
        assert "precision" not in trial.params  # a knob that would change nothing is not sampled
        used |= {step.technique for _, steps in plan for step in steps}
        assert compress(cnn, plan, cnn_input)(cnn_input).shape == (4, 10)
        assert plan_from_params(params_from_plan(plan, space), space) == plan
    assert used == {"channel_prune"}

    quantize_only = build_space(cnn, cnn_input).restricted_to(["quantize"])
    assert quantizable(quantize_only)
    plans = [plan for _, plan in _sampled_plans(quantize_only, 12)]
    assert all(step.technique == "quantize" for plan in plans for _, steps in plan for step in steps)
    assert any(plans)  # some sampled precision was not `none`


class _AppliesNowhere(Technique):
    name = "applies_nowhere"
    summary = "a user's technique for layers this model does not have"

    def why_not(self, layer: nn.Module, site: LayerSite) -> str | None:
        return "never"

    def space(self, layer: nn.Module, site: LayerSite) -> Mapping[str, ParamSpec]:
        return {}

    def apply(self, layer: nn.Module, site: LayerSite, **params: object) -> nn.Module:
        return layer


@pytest.fixture
def applies_nowhere() -> Iterator[str]:
    register_technique(_AppliesNowhere())
    yield _AppliesNowhere.name
    unregister_technique(_AppliesNowhere.name)


def test_techniques_that_apply_nowhere_are_refused_naming_those_that_do(
    cnn: nn.Module, cnn_input: torch.Tensor, tmp_path: Path, applies_nowhere: str
) -> None:
    space = build_space(cnn, cnn_input)
    with pytest.raises(AdacompError, match=r"techniques: none of \['applies_nowhere'\] applies") as info:
        restricted_space(space, _config(tmp_path, techniques=[applies_nowhere]))
    assert "channel_prune" in str(info.value) and "\n" not in str(info.value)
    assert restricted_space(space, _config(tmp_path)) is space  # no `techniques`: every one


def test_an_unknown_technique_is_refused_before_anything_is_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADACOMP_CACHE", str(cache))
    with pytest.raises(AdacompError, match="techniques: unknown technique 'prune_everything'; registered: "):
        search(_config(tmp_path, techniques=["quantize", "prune_everything"]), progress=False)
    assert not cache.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("techniques", "message"),
    [
        ([], "at least 1 item"),
        (["quantize", "quantize"], "listed twice"),
        (["low-rank"], "not a technique name"),
    ],
)
def test_bad_technique_lists_name_the_field(tmp_path: Path, techniques: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        _config(tmp_path, techniques=techniques)
    assert "techniques" in str(info.value)

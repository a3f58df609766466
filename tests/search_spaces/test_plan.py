from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adacomp.errors import AdacompError
from adacomp.search_spaces import CompressionPlan, Step

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{1,6}){0,2}", fullmatch=True)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
)
steps = st.builds(
    lambda technique, params: Step(technique, tuple(sorted(params.items()))),
    st.sampled_from(["low_rank", "fire", "quantize", "magnitude_prune", "custom"]),
    st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), values, max_size=3),
)
plans = st.dictionaries(names, st.lists(steps, min_size=1, max_size=3), max_size=6).map(
    CompressionPlan.from_mapping
)


@given(plans)
def test_json_round_trip_is_exact(plan: CompressionPlan) -> None:
    again = CompressionPlan.from_json(plan.to_json())
    assert again == plan
    assert hash(again) == hash(plan)
    assert again.hash == plan.hash


@given(plans)
def test_layer_order_does_not_change_identity(plan: CompressionPlan) -> None:
    reversed_plan = CompressionPlan(tuple(reversed(plan.layers)))
    assert reversed_plan == plan and reversed_plan.hash == plan.hash


def test_hash_is_stable_across_processes() -> None:
    plan = CompressionPlan.from_mapping({"fc1": [Step.of("low_rank", rank_fraction=0.25)]})
    code = (
        "from adacomp.search_spaces import CompressionPlan, Step;"
        "print(CompressionPlan.from_mapping({'fc1': [Step.of('low_rank', rank_fraction=0.25)]}).hash)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == plan.hash


def test_step_order_matters() -> None:
    a = CompressionPlan.from_mapping(
        {"x": [Step.of("low_rank", rank_fraction=0.5), Step.of("quantize", precision="int8")]}
    )
    b = CompressionPlan.from_mapping(
        {"x": [Step.of("quantize", precision="int8"), Step.of("low_rank", rank_fraction=0.5)]}
    )
    assert a != b and a.hash != b.hash


def test_plan_is_frozen() -> None:
    plan = CompressionPlan()
    with pytest.raises(AttributeError):
        plan.layers = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"layers": 3}', "'layers' must map"),
        ('{"layers": {"fc1": []}}', "non-empty list"),
        ('{"layers": {"fc1": [{"params": {}}]}}', "expected {'technique'"),
        ('{"layers": {"fc1": [{"technique": "x", "params": [1]}]}}', "'params' must be an object"),
        ('{"layers": {"fc1": [{"technique": "x", "extra": 1}]}}', "unknown key 'extra'"),
        ('{"version": 9, "layers": {}}', "unsupported plan version 9"),
        ('{"layers": {}, "bogus": 1}', "unknown key 'bogus'"),
    ],
)
def test_malformed_plans_get_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(AdacompError, match=message) as info:
        CompressionPlan.from_json(text, source="p.json")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("p.json")


def test_load_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AdacompError, match="does not exist"):
        CompressionPlan.load(tmp_path / "nope.json")


def test_save_and_load(tmp_path: Path) -> None:
    plan = CompressionPlan.from_mapping(
        {"a.b": [Step.of("fire", squeeze_ratio=0.5, expand_1x1_fraction=0.25)]}
    )
    plan.save(tmp_path / "plan.json")
    assert CompressionPlan.load(tmp_path / "plan.json") == plan
    assert json.loads((tmp_path / "plan.json").read_text())["version"] == 1

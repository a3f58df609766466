"""Every numeric field of every config is finite and in a stated range (issue 18, item 3).

A contract over all ConfigModel subclasses, so a field added later without a range fails here;
then the reproductions of the issue against real files: NaN switching a hard constraint off,
contradictory bounds, infinities, a 30-digit `trials`, `trials: true`.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import adacomp.device_farm.config
import adacomp.device_farm.profiles
import adacomp.device_farm.settings
import adacomp.platform.search_config
from adacomp.errors import AdacompError
from adacomp.platform.search_config import Constraint, load_search_config
from adacomp.yaml_config import ConfigModel


def _all_models(base: type[ConfigModel] = ConfigModel) -> list[type[ConfigModel]]:
    found: list[type[ConfigModel]] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_all_models(sub))
    return sorted(set(found), key=lambda m: f"{m.__module__}.{m.__qualname__}")


def _bounds(metadata: list[Any]) -> tuple[bool, bool]:
    low = any(isinstance(m, annotated_types.Ge | annotated_types.Gt) for m in metadata)
    high = any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in metadata)
    return low, high


def _numeric_leaves(annotation: Any, low: bool, high: bool) -> Iterator[tuple[Any, bool, bool]]:
    """(type, has a lower bound, has an upper bound) for every int/float inside a field's type."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        metadata: list[Any] = []
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        more_low, more_high = _bounds(metadata)
        yield from _numeric_leaves(base, low or more_low, high or more_high)
        return
    if annotation in (int, float):
        yield annotation, low, high
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return  # checked as a model of its own
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin is dict:
        args = args[1:]  # keys are names
    for arg in args:
        yield from _numeric_leaves(arg, low, high)


MODELS = _all_models()


def test_the_contract_covers_every_config() -> None:
    names = {m.__name__ for m in MODELS}
    assert {
        "SearchConfig",
        "Constraint",
        "FarmConfig",
        "HostSpec",
        "MeasureSettings",
        "DeviceProfile",
    } <= names


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_numeric_field_states_its_range(model: type[ConfigModel]) -> None:
    unbounded = []
    for name, field in model.model_fields.items():
        low, high = _bounds(field.metadata)
        for kind, has_low, has_high in _numeric_leaves(field.annotation, low, high):
            if not (has_low and has_high):
                unbounded.append(f"{name} ({kind.__name__}: lower {has_low}, upper {has_high})")
    assert not unbounded, f"{model.__name__}: numeric fields without a stated range: {unbounded}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_config_refuses_nan_and_infinity(model: type[ConfigModel]) -> None:
    assert model.model_config.get("allow_inf_nan") is False
    assert model.model_config.get("frozen") is True and model.model_config.get("extra") == "forbid"


GOOD = """
name: s
task: digits
targets: [pixel4]
objectives:
  - {metric: accuracy}
  - {metric: latency, target: pixel4}
constraints:
  - {metric: accuracy_drop, max: 1.0}
trials: 4
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("{metric: accuracy_drop, max: 1.0}", "{metric: accuracy_drop, max: .nan}", "not a finite number"),
        (
            "{metric: accuracy_drop, max: 1.0}",
            "{metric: accuracy_drop, min: 5, max: 1}",
            r"min \(5\) is above max",
        ),
        (
            "trials: 4",
            "trials: 4\nutility: {accuracy: .inf}",
            "utility.accuracy: .*not a finite number|finite",
        ),
        ("trials: 4", "trials: 4\nfinetune: {epochs: .inf}", "finetune.epochs"),
        ("trials: 4", "trials: 4\nmeasure: {max_seconds: .inf}", "measure.max_seconds"),
        ("trials: 4", "trials: 4\nsupernet: {lr: .inf}", "supernet.lr"),
        ("trials: 4", "trials: 4\nsupernet: {lr: 1.5e400}", "supernet.lr: Input should be a finite number"),
        ("trials: 4", "trials: 123456789012345678901234567890", "trials: Input should be less than or equal"),
        ("trials: 4", "trials: 1" + "0" * 400, "trials: a number longer than 40 digits"),
        ("trials: 4", "trials: 1" + "0" * 5000, "a number of thousands of digits"),
        ("trials: 4", "trials: true", "trials: expected a number, got true"),
        ("trials: 4", "trials: 4\nseed: -1", "seed: Input should be greater than or equal to 0"),
        ("trials: 4", "trials: 4\nrl: {hidden: [64, true]}", "hidden: expected a number, got \\[64, true\\]"),
        (
            "trials: 4",
            "trials: 4\nsupernet: {width: [0.5, 2]}",
            "supernet.width.1: Input should be less than",
        ),
    ],
)
def test_numbers_that_switch_limits_off_or_never_end_are_refused(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(AdacompError, match=message) as caught:
        load_search_config(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"search config {str(path)!r}: ")


def test_a_constraint_built_in_code_refuses_nan_too() -> None:
    """Not only files: a NaN bound made `violation(50.0)` return 0.0, the constraint switched off."""
    with pytest.raises(ValueError, match="finite"):
        Constraint(metric="accuracy_drop", max=float("nan"))
    assert Constraint(metric="accuracy_drop", max=1.0).violation(50.0) == 49.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: []\nqueue_size: .inf", "queue_size"),
        ("devices: []\nretries: true", "retries: expected a number, got true"),
        ("devices: [{name: h, kind: host, cores: [0, 99999]}]", "cores.1: Input should be less than"),
        ("devices: [{name: h, kind: host, timeout_s: .nan}]", "not a finite number"),
        ("devices: []\nlease_timeout_s: 1e400", "lease_timeout_s"),
    ],
)
def test_farm_config_numbers_are_finite_and_ranged(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    with pytest.raises(AdacompError, match=message):
        adacomp.device_farm.config.load_farm_config(path)


def test_a_profile_with_an_infinite_rate_is_refused(tmp_path: Path) -> None:
    source = Path(adacomp.device_farm.profiles.PROFILE_DIR / "pixel4.yaml").read_text()
    path = tmp_path / "fast.yaml"
    path.write_text(source.replace("bandwidth_gbs:", "bandwidth_gbs: .inf\nold_bandwidth_gbs:", 1))
    with pytest.raises(AdacompError, match=r"bandwidth_gbs: inf is not a finite number"):
        adacomp.device_farm.profiles.load_profile(path)


def test_measure_settings_refuse_bools_and_infinities() -> None:
    settings = adacomp.device_farm.settings.MeasureSettings
    for bad in ({"min_runs": True}, {"max_seconds": float("inf")}, {"target_cv": float("nan")}):
        with pytest.raises(ValueError, match=r"finite number|expected a number"):
            settings.model_validate(bad)

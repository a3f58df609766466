"""The sensitivity analysis on a real (briefly trained) model: what it measures, how it bounds
the space, and that it is saved data (a resumed search reads it back unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adacomp.platform.evaluate.sensitivity import (
    STRENGTH_KNOBS,
    Probe,
    SensitivityReport,
    analyse_sensitivity,
    bounded_space,
    ordered_by_sensitivity,
)
from adacomp.search_spaces import FloatParam, SearchSpace, build_space
from adacomp.tasks import pretrained_model
from tests.platform.tiny_task import tiny_digits

Analysed = tuple[SearchSpace, SensitivityReport]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    task = tiny_digits()
    model = pretrained_model(task, cache_dir=tmp_path_factory.mktemp("cache"))
    space = build_space(model, task.example_input(2))
    report = analyse_sensitivity(
        model, space, task.data.val, task.example_input(2), max_drop=5.0, samples=256
    )
    return space, report


def test_every_strength_knob_of_every_layer_is_probed_mild_to_aggressive(analysed: Analysed) -> None:
    space, report = analysed
    assert report.samples == 256 and 0.5 < report.baseline_accuracy <= 1.0
    expected = {
        (layer.name, technique)
        for layer in space.layers
        for technique in STRENGTH_KNOBS
        if technique in layer.techniques
    }
    assert {(p.entry, p.technique) for p in report.probes} == expected
    for probe in report.probes:
        levels = [level for level, _ in probe.drops]
        assert levels == [v for v in STRENGTH_KNOBS[probe.technique][1] if v in levels]
        within = [level for level, drop in probe.drops if drop <= report.max_drop]
        assert probe.bound == (within[-1] if within else levels[0])
    # magnitude pruning at 90 % of the first conv's few weights hurts more than at 30 %
    conv1 = next(p for p in report.probes if p.entry == "features.conv1" and p.technique == "magnitude_prune")
    assert conv1.drops[-1][1] > conv1.drops[0][1]


def test_bounded_space_keeps_the_mild_side_of_each_knob(analysed: Analysed) -> None:
    space, report = analysed
    bounded = bounded_space(space, report)
    for probe in report.probes:
        before = space.layer(probe.entry).techniques[probe.technique][probe.param]
        after = bounded.layer(probe.entry).techniques[probe.technique][probe.param]
        assert isinstance(before, FloatParam) and isinstance(after, FloatParam)
        assert after.low <= after.default <= after.high
        if probe.technique == "low_rank":  # stronger downwards: the low end rises to the bound
            assert after.low == max(before.low, probe.bound) and after.high == before.high
        else:
            assert after.high == min(before.high, probe.bound) and after.low == before.low
    assert bounded.channels == space.channels and space.channels.groups  # plans still repaired
    assert ordered_by_sensitivity(space, report).channels == space.channels
    untouched = {t for layer in bounded.layers for t in layer.techniques} - set(STRENGTH_KNOBS)
    for name in untouched:  # structural replacements are never bounded
        for layer in space.layers:
            if name in layer.techniques:
                assert bounded.layer(layer.name).techniques[name] == layer.techniques[name]


def test_the_report_is_data_and_orders_the_least_sensitive_first(analysed: Analysed, tmp_path: Path) -> None:
    space, report = analysed
    assert SensitivityReport.from_dict(report.to_dict()) == report
    ordered = ordered_by_sensitivity(space, report)
    scores = [report.score(layer.name) for layer in ordered.layers]
    assert scores == sorted(scores) and {la.name for la in ordered.layers} == {la.name for la in space.layers}
    assert "drop at each level" in report.table() and "features.conv1" in report.table()


def test_a_bound_below_every_probe_keeps_the_mildest_level() -> None:
    space = build_space(tiny_digits().build_model(), tiny_digits().example_input(2))
    probe = Probe("fc1", "channel_prune", "ratio", ((0.25, 50.0), (0.5, 60.0), (0.75, 70.0)), 0.25)
    cut = bounded_space(space, SensitivityReport(0.9, 100, 5.0, (probe,)))
    ratio = cut.layer("fc1").techniques["channel_prune"]["ratio"]
    assert isinstance(ratio, FloatParam) and (ratio.low, ratio.high) == (0.0, 0.25)

"""How much each choice of the space can take, before any trial: AMC/NetAdapt-style sensitivity.

For every entry of the space (a layer, or a group's layers together) and every strength knob
that keeps the layer's own weights (magnitude sparsity, channel-pruning ratio, low-rank
fraction), the uncompressed model is compressed at that one place, at a few levels from mild
to aggressive, and its validation accuracy measured without fine-tuning. A level is within
budget while its drop stays under `max_drop` points; each entry's range of that knob is then
cut at the most aggressive level within budget, so the search spends no trial on settings that
wreck the model whatever the fine-tuning. Structural replacements (depthwise-separable, fire,
the GAP head) start from new weights: their accuracy before fine-tuning says nothing, so they
are left alone. The mean drop of an entry orders the RL agent's episode (least sensitive first:
the agent takes its savings where they are cheap while its budget is still open).

Pure given the model and data: the same inputs give the same report, which a search saves and
reloads on resume (its space must not change under a running study).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from adacomp.platform.table import format_table
from adacomp.search_spaces import CompressionPlan, FloatParam, LayerSpace, SearchSpace, Step, compress
from adacomp.tasks import evaluate
from adacomp.tasks._base import dataset_len

# technique -> (its strength parameter, probed levels from mild to aggressive)
STRENGTH_KNOBS: Mapping[str, tuple[str, tuple[float, ...]]] = {
    "magnitude_prune": ("sparsity", (0.3, 0.5, 0.7, 0.9)),
    "channel_prune": ("ratio", (0.25, 0.5, 0.75)),
    "low_rank": ("rank_fraction", (0.5, 0.25, 0.1)),
}


@dataclass(frozen=True)
class Probe:
    """One entry's knob: the accuracy drop (points, no fine-tuning) at each probed level."""

    entry: str
    technique: str
    param: str
    drops: tuple[tuple[float, float], ...]  # (level, drop) from mild to aggressive
    bound: float  # the most aggressive level within budget (the mildest when none is)


@dataclass(frozen=True)
class SensitivityReport:
    baseline_accuracy: float
    samples: int
    max_drop: float
    probes: tuple[Probe, ...]

    def score(self, entry: str) -> float:
        """The entry's mean drop over its probes (0 when it has none): its sensitivity."""
        drops = [d for p in self.probes if p.entry == entry for _, d in p.drops]
        return sum(drops) / len(drops) if drops else 0.0

    def table(self) -> str:
        rows = [
            [
                p.entry,
                f"{p.technique}.{p.param}",
                "  ".join(f"{level:g}: {drop:.1f}" for level, drop in p.drops),
                f"{p.bound:g}",
            ]
            for p in self.probes
        ]
        head = (
            f"sensitivity: accuracy drop in points without fine-tuning ({self.samples} validation "
            f"samples, baseline {100 * self.baseline_accuracy:.2f} %); ranges are cut where the "
            f"drop passes {self.max_drop:g} pt"
        )
        return head + "\n" + format_table(["choice", "knob", "drop at each level", "bound"], rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_accuracy": self.baseline_accuracy,
            "samples": self.samples,
            "max_drop": self.max_drop,
            "probes": [
                {
                    "entry": p.entry,
                    "technique": p.technique,
                    "param": p.param,
                    "drops": [list(d) for d in p.drops],
                    "bound": p.bound,
                }
                for p in self.probes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityReport:
        probes = tuple(
            Probe(
                entry=str(p["entry"]),
                technique=str(p["technique"]),
                param=str(p["param"]),
                drops=tuple((float(level), float(drop)) for level, drop in p["drops"]),
                bound=float(p["bound"]),
            )
            for p in data["probes"]
        )
        return cls(float(data["baseline_accuracy"]), int(data["samples"]), float(data["max_drop"]), probes)


def analyse_sensitivity(
    model: nn.Module,
    space: SearchSpace,
    data: Dataset[tuple[torch.Tensor, torch.Tensor]],
    example: torch.Tensor,
    *,
    max_drop: float,
    samples: int = 512,
) -> SensitivityReport:
    """Probes every entry's strength knobs (see the module docstring)."""
    subset: Dataset[tuple[torch.Tensor, torch.Tensor]] = Subset(data, range(min(samples, dataset_len(data))))
    base = evaluate(model, subset)
    probes = []
    for entry in space.layers:
        for technique, (param, levels) in STRENGTH_KNOBS.items():
            spec = entry.techniques.get(technique, {}).get(param)
            if not isinstance(spec, FloatParam):
                continue
            usable = [v for v in levels if spec.low <= v <= spec.high]
            drops = tuple(
                (v, _drop(model, entry, technique, param, v, subset, example, base)) for v in usable
            )
            if drops:
                within = [v for v, d in drops if d <= max_drop]
                probes.append(Probe(entry.name, technique, param, drops, within[-1] if within else usable[0]))
    return SensitivityReport(base, dataset_len(subset), max_drop, tuple(probes))


def _drop(
    model: nn.Module,
    entry: LayerSpace,
    technique: str,
    param: str,
    level: float,
    data: Dataset[tuple[torch.Tensor, torch.Tensor]],
    example: torch.Tensor,
    base: float,
) -> float:
    step = Step.of(technique, **{param: level})
    plan = CompressionPlan.from_mapping({layer: [step] for layer in entry.layer_names})
    try:
        compressed = compress(model, plan, example)
    except Exception:  # a level that does not build is as bad as it gets
        return 100.0 * base
    return 100.0 * (base - evaluate(compressed, data))


def bounded_space(space: SearchSpace, report: SensitivityReport) -> SearchSpace:
    """`space` with each probed knob's range cut at its bound (the mild side kept)."""
    by_entry: dict[str, list[Probe]] = {}
    for probe in report.probes:
        by_entry.setdefault(probe.entry, []).append(probe)
    layers = []
    for entry in space.layers:
        techniques = {t: dict(params) for t, params in entry.techniques.items()}
        for probe in by_entry.get(entry.name, []):
            spec = techniques[probe.technique][probe.param]
            assert isinstance(spec, FloatParam)
            techniques[probe.technique][probe.param] = _cut(spec, probe)
        layers.append(replace(entry, techniques=techniques))
    return replace(space, layers=tuple(layers))


def _cut(spec: FloatParam, probe: Probe) -> FloatParam:
    _, levels = STRENGTH_KNOBS[probe.technique]
    if levels[0] < levels[-1]:  # stronger upwards: keep [low, bound]
        high = min(spec.high, probe.bound)
        return FloatParam(spec.low, high, default=min(spec.default, high), log=spec.log)
    low = max(spec.low, probe.bound)  # stronger downwards: keep [bound, high]
    return FloatParam(low, spec.high, default=max(spec.default, low), log=spec.log)


def ordered_by_sensitivity(space: SearchSpace, report: SensitivityReport) -> SearchSpace:
    """The entries least sensitive first (stable: ties keep the model's order)."""
    return replace(space, layers=tuple(sorted(space.layers, key=lambda entry: report.score(entry.name))))

"""The space a search samples: the model's layers, cut to the config's techniques, grouped
(search_spaces/groups.py) and bounded by a sensitivity analysis (evaluate/sensitivity.py).

The analysis is saved in the search's directory and reloaded on resume: a running Optuna study
must see the very space it started with, and probing costs seconds to a minute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.sensitivity import SensitivityReport, analyse_sensitivity, bounded_space
from adacomp.platform.results.job_dir import write_atomically
from adacomp.platform.search_config import Log, SearchConfig, silent
from adacomp.safe_load import load_json_file
from adacomp.search_spaces import SearchSpace, build_space
from adacomp.search_spaces.groups import group_layers, resolve_grouping
from adacomp.search_spaces.techniques import registered_techniques
from adacomp.tasks import Task

SENSITIVITY_FILE = "sensitivity.json"


@dataclass(frozen=True)
class PreparedSpace:
    space: SearchSpace  # what the samplers see
    layers: str  # the model's entries before grouping ("53 compressible layers, 13 skippable blocks")
    grouping: str  # the grouping used (`auto` resolved)
    sensitivity: SensitivityReport | None

    def describe(self) -> str:
        bounded = ", ranges bounded by sensitivity" if self.sensitivity else ""
        choices = len(self.space.layers)
        return f"{self.layers} -> {choices} choices ({self.grouping}{bounded})"


def prepare_space(
    config: SearchConfig, task: Task, model: nn.Module, out_dir: Path | None, say: Log = silent
) -> PreparedSpace:
    """The search space of `config` over the trained `model` (see the module docstring);
    `out_dir` keeps the sensitivity analysis (None: not kept)."""
    example = task.example_input(2)
    layers = restricted_space(build_space(model, example, blocks=True), config)
    grouping = resolve_grouping(layers, model, config.space.grouping)
    space = group_layers(layers, model, grouping)
    report = None
    if config.space.sensitivity:
        report = _sensitivity(config, task, model, space, out_dir, say)
        space = bounded_space(space, report)
    return PreparedSpace(space, layers.size(), grouping, report)


def _sensitivity(
    config: SearchConfig, task: Task, model: nn.Module, space: SearchSpace, out_dir: Path | None, say: Log
) -> SensitivityReport:
    path = out_dir / SENSITIVITY_FILE if out_dir is not None else None
    if path is not None and path.exists():
        return SensitivityReport.from_dict(load_json_file(path, "sensitivity report"))
    say(f"sensitivity: probing {len(space.layers)} choices without fine-tuning")
    report = analyse_sensitivity(
        model,
        space,
        task.data.val,
        task.example_input(2),
        max_drop=config.space.max_drop,
        samples=config.space.samples,
    )
    if path is not None:
        write_atomically(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def check_techniques_known(config: SearchConfig) -> None:
    known = registered_techniques()
    for name in config.techniques or ():
        if name not in known:
            raise AdacompError(f"techniques: unknown technique {name!r}; registered: {', '.join(known)}")


def restricted_space(space: SearchSpace, config: SearchConfig) -> SearchSpace:
    """The model's space cut to `config.techniques`, refused in one line when a name is unknown
    or when none of them applies to any layer of this model."""
    if config.techniques is None:
        return space
    check_techniques_known(config)
    restricted = space.restricted_to(config.techniques)
    if not restricted.layers:
        applicable = ", ".join(sorted(space.techniques()))
        raise AdacompError(
            f"techniques: none of {list(config.techniques)} applies to a layer of {config.task!r} "
            f"(these do: {applicable})"
        )
    return restricted

"""The agent's action set: one fixed catalogue of discretised choices, masked per layer.

The catalogue does not depend on the model (the same index means the same choice on every
model), so a policy trained on one model and usage can start the search on another
(`--init-policy`). A layer step picks one main technique with its hyper-parameters *and* a
magnitude-pruning level (AdaDeep's combinations); the last step of an episode picks the model's
quantization precision. Choices that do not apply to a layer are masked, never remapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from adacomp.platform.strategies.plan_space import (
    NONE,
    PRECISIONS,
    main_options,
    max_sparsity,
    plan_from_params,
    precision_options,
    quantizable,
)
from adacomp.search_spaces import CompressionPlan, LayerSpace, SearchSpace
from adacomp.search_spaces.params import ParamValue

# Discretised hyper-parameters: a few well-spread values inside each technique's range.
MAIN_CHOICES: tuple[tuple[str, tuple[tuple[str, ParamValue], ...]], ...] = (
    (NONE, ()),
    ("channel_prune", (("ratio", 0.25),)),
    ("channel_prune", (("ratio", 0.5),)),
    ("channel_prune", (("ratio", 0.75),)),
    ("low_rank", (("rank_fraction", 0.1),)),
    ("low_rank", (("rank_fraction", 0.25),)),
    ("low_rank", (("rank_fraction", 0.5),)),
    ("depthwise_separable", (("multiplier", 1),)),
    ("depthwise_separable", (("multiplier", 2),)),
    ("fire", (("squeeze_ratio", 0.25), ("expand_1x1_fraction", 0.5))),
    ("fire", (("squeeze_ratio", 0.5), ("expand_1x1_fraction", 0.5))),
    ("gap_head", ()),
)
SPARSITIES = (0.0, 0.5, 0.8)


@dataclass(frozen=True)
class LayerChoice:
    technique: str  # a main technique or `none`
    params: tuple[tuple[str, ParamValue], ...]
    sparsity: float

    def describe(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in self.params)
        main = f"{self.technique}({values})" if values else self.technique
        return main + (f" + prune {self.sparsity:g}" if self.sparsity else "")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # one of plan_space.PRECISIONS

    def describe(self) -> str:
        return f"precision {self.precision}"


Choice = LayerChoice | PrecisionChoice

# Choices added after the first catalogue go last, so every earlier index keeps its meaning.
LATER_CHOICES: tuple[Choice, ...] = (LayerChoice("skip_block", (), 0.0),)

CATALOGUE: tuple[Choice, ...] = (
    *(LayerChoice(t, p, s) for (t, p), s in product(MAIN_CHOICES, SPARSITIES)),
    *(PrecisionChoice(p) for p in PRECISIONS),
    *LATER_CHOICES,
)
LAYER_ACTIONS = tuple(i for i, c in enumerate(CATALOGUE) if isinstance(c, LayerChoice))
PRECISION_ACTIONS = tuple(i for i, c in enumerate(CATALOGUE) if isinstance(c, PrecisionChoice))
N_ACTIONS = len(CATALOGUE)


def _valid(layer: LayerSpace, choice: LayerChoice, options: list[str]) -> bool:
    if choice.technique not in options:
        return False
    if choice.sparsity and (
        "magnitude_prune" not in layer.techniques or choice.sparsity > max_sparsity(layer)
    ):
        return False
    if choice.technique == NONE:
        return True
    specs = layer.techniques[choice.technique]
    if set(specs) != {k for k, _ in choice.params}:
        return False
    try:
        for key, value in choice.params:
            specs[key].validate(key, value)
    except Exception:
        return False
    return True


def layer_mask(layer: LayerSpace, buildable: Mapping[tuple[str, ...], bool] | None = None) -> np.ndarray:
    """1 where the catalogue's choice applies to this layer (and, when known, builds)."""
    options = main_options(layer)
    mask = np.zeros(N_ACTIONS, dtype=np.float32)
    for i in LAYER_ACTIONS:
        choice = CATALOGUE[i]
        assert isinstance(choice, LayerChoice)
        if _valid(layer, choice, options) and (buildable or {}).get(main_key(choice), True):
            mask[i] = 1.0
    mask[LAYER_ACTIONS[0]] = 1.0  # `none` without pruning always applies: never an all-zero mask
    return mask


def precision_mask(space: SearchSpace) -> np.ndarray:
    mask = np.zeros(N_ACTIONS, dtype=np.float32)
    offered = precision_options(space) if quantizable(space) else [NONE]
    for i in PRECISION_ACTIONS:
        choice = CATALOGUE[i]
        assert isinstance(choice, PrecisionChoice)
        mask[i] = 1.0 if choice.precision in offered else 0.0
    return mask


def main_key(choice: LayerChoice) -> tuple[str, ...]:
    """The main technique with its values: what building a layer depends on (not the pruning)."""
    return (choice.technique, *(f"{k}={v}" for k, v in choice.params))


def plan_from_actions(space: SearchSpace, actions: list[int]) -> CompressionPlan:
    """The plan an episode chose: one action per layer in order, then the precision."""
    if len(actions) != len(space.layers) + 1:
        raise ValueError(f"expected {len(space.layers) + 1} actions, got {len(actions)}")
    params: dict[str, Any] = {}
    for layer, action in zip(space.layers, actions[:-1], strict=True):
        choice = CATALOGUE[action]
        if not isinstance(choice, LayerChoice):
            raise ValueError(f"action {action} ({choice.describe()}) is not a layer choice")
        params[f"{layer.name}/technique"] = choice.technique
        for key, value in choice.params:
            params[f"{layer.name}/{choice.technique}/{key}"] = value
        params[f"{layer.name}/sparsity"] = choice.sparsity
    last = CATALOGUE[actions[-1]]
    if not isinstance(last, PrecisionChoice):
        raise ValueError(f"the last action must pick a precision, got {last.describe()}")
    params["precision"] = last.precision
    return plan_from_params(params, space)

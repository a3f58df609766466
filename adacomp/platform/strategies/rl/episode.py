"""What an episode knows: per-layer features, action masks, cheap cost estimates, the reward.

Built once in the driver (`episode_spec`), where the model is, and shipped to the env runners
as plain arrays: the environment itself never touches torch. Observations have a fixed size
whatever the model, so a policy carries over between models and usages.

Cheap estimates: each (layer, main choice) is built once as a one-layer plan and its storage
and MACs are compared with the uncompressed model's, exactly (a pruned conv's effect on the
next layer included); magnitude pruning scales the layer's storage by its density. They drive
potential-based shaping (Ng, Harada & Russell, ICML 1999): each layer step is rewarded by the
change in the estimated cost part of the utility, and the last step pays the measured utility
minus the estimate, so an episode's return is the true reward (plus a constant) and the best
plan is unchanged; the agent only learns sooner which choices save.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from adacomp.platform.evaluate.objectives import constraint_scales, penalised_utility
from adacomp.platform.search_config import SearchConfig
from adacomp.platform.strategies.rl.actions import (
    CATALOGUE,
    LAYER_ACTIONS,
    N_ACTIONS,
    LayerChoice,
    layer_mask,
    main_key,
    precision_mask,
)
from adacomp.search_spaces import CompressionPlan, SearchSpace, Step, compress, model_facts

LAYER_FEATURES = 13
CONTEXT_FEATURES = 12
OBS_SIZE = LAYER_FEATURES + CONTEXT_FEATURES
OBS_BOUND = 4.0  # every feature is scaled to about [0, 2]; clipped here for any model
FAILED_REWARD = -1.0  # a plan that does not build or crashes: worse than any measured plan


@dataclass(frozen=True)
class Estimate:
    storage: float  # change in encoded bytes against the uncompressed model, as a fraction of it
    macs: float  # change in MACs, as a fraction of the model's


@dataclass(frozen=True)
class EpisodeSpec:
    space: SearchSpace
    layer_features: np.ndarray  # (layers, LAYER_FEATURES)
    masks: np.ndarray  # (layers + 1, N_ACTIONS): the last row is the precision step
    storage_delta: np.ndarray  # (layers, N_ACTIONS)
    macs_delta: np.ndarray  # (layers, N_ACTIONS)
    context: np.ndarray  # (CONTEXT_FEATURES - 3,): budgets and usage weights, fixed per search
    storage_weight: float
    compute_weight: float  # latency + energy weights: MACs stand in for both while estimating
    constraint_scales: tuple[float, ...]
    penalty: float
    shaping: bool

    @property
    def steps(self) -> int:
        return len(self.space.layers) + 1

    def potential(self, storage_ratio: float, macs_ratio: float) -> float:
        """Minus the estimated cost part of the utility (0 when shaping is off)."""
        if not self.shaping:
            return 0.0
        return -(self.storage_weight * storage_ratio + self.compute_weight * macs_ratio)

    @property
    def failed_reward(self) -> float:
        """Below every measured plan's reward: FAILED_REWARD less the most a penalty can take."""
        return FAILED_REWARD - self.penalty * (1 + len(self.constraint_scales))

    def reward(self, outcome: Mapping[str, Any]) -> float:
        """Feasibility first: a plan that meets every constraint earns its utility; one that
        breaks any loses `penalty` for that, and `penalty` per relative violation (each capped at
        1). Without the step, a plan a hair past a limit (2.1 pt against 2.0) kept nearly all of
        its utility, and a cheap model just past the accuracy limit outscored every feasible one:
        on digits' supernet the agent's last 40 plans were 20 % feasible against random's 53 %."""
        if outcome.get("failed") or outcome.get("utility") is None:
            return self.failed_reward
        violations = outcome.get("violations", ())
        score = penalised_utility(float(outcome["utility"]), violations, self.constraint_scales, self.penalty)
        return score - self.penalty if any(v > 0 for v in violations) else score


def _kind(module: nn.Module) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return 1 if depthwise else 0
    if isinstance(module, nn.Linear):
        return 2
    return 3


def _layer_features(model: nn.Module, space: SearchSpace, total_params: int, total_macs: int) -> np.ndarray:
    rows = []
    n = len(space.layers)
    for i, layer in enumerate(space.layers):
        module = model.get_submodule(layer.site.name)  # a group's first layer stands for it
        kind = np.zeros(4, dtype=np.float32)
        kind[_kind(module)] = 1.0
        weight = getattr(module, "weight", None)
        kernel = int(np.prod(weight.shape[2:])) if isinstance(weight, torch.Tensor) else 1
        site = layer.site
        rows.append(
            [
                *kind,
                math.log1p(layer.parameters) / 16,
                math.log1p(site.macs) / 20,
                layer.parameters / max(1, total_params),
                site.macs / max(1, total_macs),
                math.log2(1 + (site.input_shape[0] if site.input_shape else 1)) / 12,
                math.log2(1 + (site.output_shape[0] if site.output_shape else 1)) / 12,
                min(1.0, kernel / 25),
                float(site.is_output),
                i / max(1, n),
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(n, LAYER_FEATURES)


def _context(config: SearchConfig, baseline: Mapping[str, float | None]) -> np.ndarray:
    """Budgets as fractions of the uncompressed model (2 = unconstrained) and the usage weights."""
    storage_budget, latency_budget, drop_budget = 2.0, 2.0, 1.0
    for c in config.constraints:
        base = baseline.get(c.key)
        if c.max is not None and c.metric == "storage" and base:
            storage_budget = min(storage_budget, c.max / base)
        elif c.max is not None and c.metric == "latency" and base:
            latency_budget = min(latency_budget, c.max / base)
        elif c.max is not None and c.metric == "accuracy_drop":
            drop_budget = min(drop_budget, c.max / 10)
    w = config.utility
    weights = np.array([w.accuracy, w.latency, w.energy, w.storage, w.memory], dtype=np.float32)
    weights = weights / max(1e-9, float(weights.sum()))
    budgets = np.clip([storage_budget, latency_budget, drop_budget], 0.0, 2.0)
    return np.concatenate([budgets, weights, [float(bool(config.constraints))]]).astype(np.float32)


def _estimates(
    model: nn.Module, space: SearchSpace, example: torch.Tensor, base_storage: float, base_macs: float
) -> tuple[np.ndarray, np.ndarray, list[dict[tuple[str, ...], bool]]]:
    storage = np.zeros((len(space.layers), N_ACTIONS), dtype=np.float32)
    macs = np.zeros_like(storage)
    buildable: list[dict[tuple[str, ...], bool]] = []
    for row, layer in enumerate(space.layers):
        built: dict[tuple[str, ...], Estimate | None] = {}
        layer_bytes = 4.0 * layer.parameters
        for action in LAYER_ACTIONS:
            choice = CATALOGUE[action]
            assert isinstance(choice, LayerChoice)
            key = main_key(choice)
            if key not in built:
                built[key] = _estimate_main(
                    model, layer.layer_names, choice, example, base_storage, base_macs
                )
            estimate = built[key]
            if estimate is None:
                continue
            kept_bytes = max(0.0, layer_bytes + estimate.storage * base_storage)
            storage[row, action] = estimate.storage - choice.sparsity * kept_bytes / base_storage
            macs[row, action] = estimate.macs
        buildable.append({k: v is not None for k, v in built.items()})
    return storage, macs, buildable


def _estimate_main(
    model: nn.Module,
    layers: Sequence[str],
    choice: LayerChoice,
    example: torch.Tensor,
    base_storage: float,
    base_macs: float,
) -> Estimate | None:
    if choice.technique == "none":
        return Estimate(0.0, 0.0)
    plan = CompressionPlan.from_mapping(
        {layer: [Step.of(choice.technique, **dict(choice.params))] for layer in layers}
    )
    try:
        facts = model_facts(compress(model, plan, example), example, plan)
    except Exception:  # the choice does not build on this layer: masked, never proposed
        return None
    return Estimate((facts.storage_bytes - base_storage) / base_storage, (facts.macs - base_macs) / base_macs)


def episode_spec(
    config: SearchConfig,
    space: SearchSpace,
    model: nn.Module,
    example: torch.Tensor,
    baseline: Mapping[str, float | None],
) -> EpisodeSpec:
    base = model_facts(model, example, CompressionPlan())
    storage, macs, buildable = _estimates(model, space, example, float(base.storage_bytes), float(base.macs))
    layer_masks = [layer_mask(layer, ok) for layer, ok in zip(space.layers, buildable, strict=True)]
    masks = np.stack([*layer_masks, precision_mask(space)])
    scales = constraint_scales(config)
    w = config.utility
    return EpisodeSpec(
        space=space,
        layer_features=_layer_features(model, space, base.parameters, base.macs),
        masks=masks,
        storage_delta=storage,
        macs_delta=macs,
        context=_context(config, baseline),
        storage_weight=w.storage,
        compute_weight=w.latency + w.energy,
        constraint_scales=scales,
        penalty=config.rl.penalty,
        shaping=config.rl.shaping,
    )


def observation(spec: EpisodeSpec, step: int, storage_ratio: float, macs_ratio: float) -> np.ndarray:
    """Features of the layer at `step` (zeros at the precision step) and of the episode so far."""
    layers = len(spec.space.layers)
    layer = spec.layer_features[step] if step < layers else np.zeros(LAYER_FEATURES, dtype=np.float32)
    so_far = np.array(
        [min(2.0, storage_ratio), min(2.0, macs_ratio), float(step >= layers)], dtype=np.float32
    )
    features = np.concatenate([layer, so_far, spec.context]).astype(np.float32)
    return np.clip(features, -OBS_BOUND, OBS_BOUND)

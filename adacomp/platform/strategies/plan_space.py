"""From a model's search space to flat sampler parameters and back to a CompressionPlan.

Samplers (Optuna through Tune, random, the RL agent) see flat, named parameters; a trial turns
them back into a plan with `plan_from_params` (which repairs a plan whose choices rule each other
out, so every strategy proposes plans that build), and a resumed search turns finished plans into
parameters (`params_from_plan`) to seed the sampler's history. Per layer: one module or
structural technique (or none) with its parameters, optional magnitude pruning; per model: one
quantization precision (or none).

Names: `<layer>/technique`, `<layer>/<technique>/<param>`, `<layer>/sparsity`, `precision`,
where `<layer>` is a group's name when layers share one choice (search_spaces/groups.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from adacomp.search_spaces import CompressionPlan, LayerSpace, SearchSpace, Step
from adacomp.search_spaces.blocks import inside
from adacomp.search_spaces.params import ChoiceParam, FloatParam, IntParam, ParamSpec
from adacomp.search_spaces.repair import repaired

NONE = "none"
# Techniques a layer may take as its one main step; magnitude pruning and quantization are
# separate knobs so they combine with any of these (AdaDeep's combinations).
MAIN_TECHNIQUES = ("channel_prune", "low_rank", "depthwise_separable", "fire", "gap_head", "skip_block")
# New precisions go last: the RL catalogue (platform.rl.actions) keeps every earlier action index.
PRECISIONS = (NONE, "int8", "int8_per_tensor", "fp16", "int8_weights")


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if isinstance(spec, FloatParam):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    if isinstance(spec, IntParam):
        return trial.suggest_int(name, spec.low, spec.high)
    assert isinstance(spec, ChoiceParam)
    return trial.suggest_categorical(name, list(spec.choices))


def main_options(layer: LayerSpace) -> list[str]:
    """`none` plus the main techniques that apply (never pruning the output layer's channels)."""
    options = [NONE, *(t for t in MAIN_TECHNIQUES if t in layer.techniques)]
    return [t for t in options if not (layer.site.is_output and t == "channel_prune")]


def suggest(trial: optuna.Trial, space: SearchSpace) -> None:
    """Optuna define-by-run: suggests every parameter of one plan (conditional on technique)."""
    for layer in space.layers:
        options = main_options(layer)
        technique = trial.suggest_categorical(f"{layer.name}/technique", options)
        if technique != NONE:
            for param, spec in layer.techniques[technique].items():
                _suggest(trial, f"{layer.name}/{technique}/{param}", spec)
        if "magnitude_prune" in layer.techniques:
            trial.suggest_float(f"{layer.name}/sparsity", 0.0, max_sparsity(layer))
    if quantizable(space):
        trial.suggest_categorical("precision", precision_options(space))


def max_sparsity(layer: LayerSpace) -> float:
    """The sparsity knob's top: 0.9, or lower where the sensitivity analysis cut the range."""
    spec = layer.techniques["magnitude_prune"].get("sparsity")
    return min(0.9, spec.high) if isinstance(spec, FloatParam) else 0.9


def precision_options(space: SearchSpace) -> list[str]:
    """`none` and the precisions the space's quantize steps take (every one of PRECISIONS for a
    model's own space; a supernet's space offers the precisions it was given)."""
    offered: set[object] = set()
    for layer in space.layers:
        if "quantize" not in layer.techniques:
            continue  # a block, or a layer quantization does not apply to
        spec = layer.techniques["quantize"].get("precision")
        offered |= set(spec.choices) if isinstance(spec, ChoiceParam) else set(PRECISIONS)
    return [p for p in PRECISIONS if p == NONE or p in offered]


def quantizable(space: SearchSpace) -> bool:
    """Whether the model-wide precision knob means anything in this space."""
    return any("quantize" in layer.techniques for layer in space.layers)


def plan_from_params(params: Mapping[str, Any], space: SearchSpace) -> CompressionPlan:
    """The plan a flat parameter dict describes (unknown or inactive keys are ignored), repaired
    where one layer's choice rules out another's (search_spaces/repair.py): what every strategy
    proposes, so that every proposed plan builds."""
    return repaired(drawn_plan(params, space), space.channels)


def drawn_plan(params: Mapping[str, Any], space: SearchSpace) -> CompressionPlan:
    """The plan exactly as the parameters name it, before repair."""
    precision = params.get("precision", NONE)
    layers: dict[str, list[Step]] = {}
    for layer in space.layers:
        steps: list[Step] = []
        technique = params.get(f"{layer.name}/technique", NONE)
        if technique != NONE:
            values = {p: params[f"{layer.name}/{technique}/{p}"] for p in layer.techniques[technique]}
            steps.append(Step.of(technique, **values))
        sparsity = float(params.get(f"{layer.name}/sparsity", 0.0))
        if sparsity > 0.05:  # below this, pruning saves nothing worth its index overhead
            steps.append(Step.of("magnitude_prune", sparsity=round(sparsity, 4)))
        if precision != NONE and "quantize" in layer.techniques:
            steps.append(Step.of("quantize", precision=precision))
        for name in layer.layer_names:  # a group's choice goes to each of its layers
            if steps:
                layers[name] = steps
    return CompressionPlan.from_mapping(_without_skipped(layers))


def _without_skipped(layers: Mapping[str, list[Step]]) -> dict[str, list[Step]]:
    """The steps of layers inside a skipped block left out: the block is gone, so they mean
    nothing (a sampler chooses every layer's technique; one plan per architecture)."""
    skipped = [name for name, steps in layers.items() if any(s.technique == "skip_block" for s in steps)]
    return {name: steps for name, steps in layers.items() if not any(inside(name, b) for b in skipped)}


def params_from_plan(plan: CompressionPlan, space: SearchSpace) -> dict[str, Any]:
    """The flat parameters that rebuild `plan` (to seed a sampler with finished trials); a
    group reads its first layer's steps (a plan from a finer space maps onto the nearest one)."""
    params: dict[str, Any] = {}
    precision = NONE
    for layer in space.layers:
        params[f"{layer.name}/technique"] = NONE
        if "magnitude_prune" in layer.techniques:
            params[f"{layer.name}/sparsity"] = 0.0
        for step in plan.steps_for(layer.layer_names[0]):
            if step.technique in MAIN_TECHNIQUES:
                params[f"{layer.name}/technique"] = step.technique
                for key, value in step.params:
                    params[f"{layer.name}/{step.technique}/{key}"] = value
            elif step.technique == "magnitude_prune":
                params[f"{layer.name}/sparsity"] = float(step.kwargs["sparsity"])
            elif step.technique == "quantize":
                precision = str(step.kwargs["precision"])
    if quantizable(space):
        params["precision"] = precision
    return params


def distributions(
    space: SearchSpace, params: Mapping[str, Any]
) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of the parameters in `params` (for `study.add_trial` when resuming)."""
    result: dict[str, optuna.distributions.BaseDistribution] = {
        "precision": optuna.distributions.CategoricalDistribution(precision_options(space))
    }
    for layer in space.layers:
        options = main_options(layer)
        result[f"{layer.name}/technique"] = optuna.distributions.CategoricalDistribution(options)
        if "magnitude_prune" in layer.techniques:
            result[f"{layer.name}/sparsity"] = optuna.distributions.FloatDistribution(
                0.0, max_sparsity(layer)
            )
        for technique in options[1:]:
            for param, spec in layer.techniques[technique].items():
                name = f"{layer.name}/{technique}/{param}"
                if isinstance(spec, FloatParam):
                    result[name] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
                elif isinstance(spec, IntParam):
                    result[name] = optuna.distributions.IntDistribution(spec.low, spec.high)
                else:
                    result[name] = optuna.distributions.CategoricalDistribution(list(spec.choices))
    return {k: v for k, v in result.items() if k in params}

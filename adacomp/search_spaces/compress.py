"""Apply a CompressionPlan to a model: validated first, never mutating the input.

Order of work: structural steps on the whole model (channel pruning reshapes neighbours), then
each layer's module steps in the plan's order, each checked against the layer as it is at that
point; export steps (quantization) are recorded in the plan and applied by `export_onnx`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces.blocks import block_sites, inside
from adacomp.search_spaces.params import ParamValue, validate_params
from adacomp.search_spaces.plan import CompressionPlan, Step
from adacomp.search_spaces.sites import LayerSite, set_submodule, trace_sites
from adacomp.search_spaces.techniques import get_technique, registered_techniques
from adacomp.search_spaces.techniques._base import Stage, StructuralTechnique, Technique

_STAGE_ORDER = {Stage.STRUCTURE: 0, Stage.MODULE: 1, Stage.EXPORT: 2}


def applicable_techniques(layer: nn.Module, site: LayerSite) -> list[str]:
    return [name for name, t in registered_techniques().items() if t.applies_to(layer, site)]


def compressible_layers(model: nn.Module, sites: Mapping[str, LayerSite]) -> list[str]:
    return [name for name, site in sites.items() if applicable_techniques(model.get_submodule(name), site)]


def _check_order(layer: str, steps: tuple[Step, ...]) -> None:
    """Static rules on one layer's step list, with the reason each exists."""
    seen: set[str] = set()
    for i, step in enumerate(steps):
        technique = get_technique(step.technique)
        if step.technique in seen:
            raise AdacompError(f"layer {layer!r}: {step.technique!r} appears twice in its steps")
        seen.add(step.technique)
        if i == 0:
            continue
        previous = get_technique(steps[i - 1].technique)
        if _STAGE_ORDER[technique.stage] < _STAGE_ORDER[previous.stage]:
            raise AdacompError(
                f"layer {layer!r}: {step.technique!r} ({technique.stage} step) cannot follow "
                f"{previous.name!r} ({previous.stage} step); order: structure, module, export"
            )
        if previous.name == "magnitude_prune" and technique.stage is Stage.MODULE:
            raise AdacompError(
                f"layer {layer!r}: {step.technique!r} cannot follow 'magnitude_prune': it would "
                "rebuild the weights and lose their sparsity; prune last"
            )


def _resolve(
    layer_name: str,
    index: int,
    technique: Technique,
    module: nn.Module,
    site: LayerSite,
    step: Step,
) -> dict[str, ParamValue]:
    reason = technique.why_not(module, site)
    if reason is not None:
        if index == 0:
            options = ", ".join(applicable_techniques(module, site)) or "none"
            raise AdacompError(
                f"layer {layer_name!r}: {technique.name!r} does not apply ({reason}); "
                f"techniques that apply: {options}"
            )
        raise AdacompError(
            f"layer {layer_name!r}: step {index + 1} {technique.name!r} does not apply after the "
            f"earlier steps ({reason})"
        )
    where = f"layer {layer_name!r}: {technique.name}"
    return validate_params(where, technique.space(module, site), step.kwargs)


def _plan_sites(
    model: nn.Module, plan: CompressionPlan, example_input: torch.Tensor
) -> tuple[dict[str, LayerSite], dict[str, LayerSite]]:
    """(leaf sites, block sites): the blocks only where the plan names a module that is not a
    leaf (finding them traces the model with fx, which no leaf-only plan should pay for)."""
    leaf_sites = trace_sites(model, example_input)
    if all(layer in leaf_sites for layer, _ in plan):
        return leaf_sites, {}
    return leaf_sites, block_sites(model, example_input, leaf_sites)


def _check_names(
    model: nn.Module,
    plan: CompressionPlan,
    leaf_sites: Mapping[str, LayerSite],
    blocks: Mapping[str, LayerSite],
) -> None:
    """Every plan key is a leaf layer that runs, or a skippable block taking block steps only;
    no layer inside a block the plan replaces has steps of its own."""
    modules = dict(model.named_modules())
    for layer, steps in plan:
        if layer not in leaf_sites and layer not in blocks:
            known = ", ".join(compressible_layers(model, leaf_sites))
            kind = "is not a leaf layer that runs in forward" if layer in modules else "is unknown"
            skippable = f"; skippable blocks: {', '.join(blocks)}" if blocks else ""
            raise AdacompError(f"plan layer {layer!r} {kind}; compressible layers: {known}{skippable}")
        unit = "block" if layer in blocks else "layer"
        for step in steps:
            if get_technique(step.technique).unit != unit:
                raise AdacompError(
                    f"plan layer {layer!r}: {step.technique!r} applies to a "
                    f"{get_technique(step.technique).unit}, and {layer!r} is a {unit}"
                )
        _check_order(layer, steps)
    for block in (layer for layer, _ in plan if layer in blocks):
        for layer, _ in plan:
            if inside(layer, block):
                raise AdacompError(
                    f"plan layer {layer!r} is inside {block!r}, which the plan replaces; "
                    "its steps could not take effect (leave them out)"
                )


def compress(model: nn.Module, plan: CompressionPlan, example_input: torch.Tensor) -> nn.Module:
    """A compressed copy of `model`. Raises AdacompError, naming the layer, on an invalid plan."""
    leaf_sites, blocks = _plan_sites(model, plan, example_input)
    _check_names(model, plan, leaf_sites, blocks)
    sites = {**leaf_sites, **blocks}

    # Cross-layer checks and first-step applicability, before any work is done.
    targets: dict[str, dict[str, dict[str, ParamValue]]] = {}
    for layer, steps in plan:
        module = model.get_submodule(layer)
        for i, step in enumerate(steps):
            technique = get_technique(step.technique)
            if i == 0 or technique.stage is Stage.EXPORT:
                params = _resolve(layer, i, technique, module, sites[layer], step)
                targets.setdefault(step.technique, {})[layer] = params
    for name, layer_params in targets.items():
        get_technique(name).check_targets(layer_params)

    compressed = copy.deepcopy(model)
    structural = [get_technique(name) for name in sorted(targets)]
    for technique in structural:
        if isinstance(technique, StructuralTechnique):
            technique.apply_to_model(compressed, targets[technique.name], sites, example_input)
    if any(isinstance(t, StructuralTechnique) for t in structural):
        sites = {**trace_sites(compressed, example_input), **blocks}  # shapes changed downstream

    for layer, steps in plan:
        module = compressed.get_submodule(layer)
        for i, step in enumerate(steps):
            technique = get_technique(step.technique)
            if technique.stage is not Stage.MODULE:
                continue
            params = _resolve(layer, i, technique, module, sites[layer], step)
            module = technique.apply(module, sites[layer], **params)
        set_submodule(compressed, layer, module)
    return compressed


def validate_plan(model: nn.Module, plan: CompressionPlan, example_input: torch.Tensor) -> None:
    """Raise AdacompError if `plan` cannot be applied to `model` (by applying it to a copy)."""
    compress(model, plan, example_input)

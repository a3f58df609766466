"""A search in supernet mode (`evaluation: supernet`): its first job trains the supernet.

The supernet is trained once per search, into the search's own directory (`<name>/supernet/`,
where `adacomp supernet train` of the same config puts it): a search that finds it there
reuses it, one killed mid-training resumes from its last checkpoint. Its weights go to every
trial worker once (the Tune payload), and the space the samplers see is the supernet's own
(search_spaces/supernet/plan_space.py), grouped like any search's: every plan proposed is a
configuration the supernet extracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from safetensors.torch import load_file
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.evaluators.supernet import supernet_options, trained_supernet, weighted_layers
from adacomp.platform.search.space import PreparedSpace
from adacomp.platform.search_config import Log, SearchConfig
from adacomp.platform.strategies.plan_space import NONE, plan_from_params
from adacomp.platform.supernet_training.training import (
    WEIGHTS_FILE,
    check_layout,
    supernet_dir,
    train_supernet_job,
    training_cost,
)
from adacomp.search_spaces import CompressionPlan, SearchSpace
from adacomp.search_spaces.groups import group_layers, resolve_grouping
from adacomp.search_spaces.params import ChoiceParam
from adacomp.search_spaces.supernet import Supernet
from adacomp.search_spaces.supernet.plan_space import in_space_terms, supernet_plan_space
from adacomp.tasks import Task


def plans_in_space_terms(
    config: SearchConfig, task: Task, model: nn.Module, plans: Sequence[CompressionPlan]
) -> tuple[CompressionPlan, ...]:
    """A supernet-mode search's warm-start plans written in its space's values, checked before
    the supernet is trained, on an untrained copy (what it can express depends on its layout,
    not on its weights): a plan it cannot express is refused in one line naming the plan and
    its layer."""
    if not plans:
        return ()
    supernet = Supernet.build(model, task.example_input(2), supernet_options(config))
    space = supernet_plan_space(supernet, model, task.example_input(2))
    weighted = weighted_layers(model)
    written = []
    for number, plan in enumerate(plans):
        try:
            written.append(in_space_terms(plan, space, supernet, weighted))
        except AdacompError as error:
            raise AdacompError(f"initial plan {number} ({plan.hash}): {error}") from None
    return tuple(written)


def uniform_plans(
    space: SearchSpace, fractions: Sequence[float], precisions: Sequence[str]
) -> list[CompressionPlan]:
    """The supernet's uniform configurations as plans, a supernet-mode search's first proposals:
    the whole model at the lowest precision the supernet holds (int8 first), then every
    width-elastic layer at one width fraction at that precision, for each fraction below full;
    then the same with every skippable block skipped (the shallowest model at each width).
    A sampler drawing one choice per layer at random rarely lands on the far end of the space
    (every layer narrow), which is where the speed is; these anchor it across the whole range
    for a few plans (seconds each), the mildest first."""
    quantized = next((p for p in ("int8", "int8_weights", "fp16") if p in precisions), NONE)
    blocks = [layer.name for layer in space.layers if "skip_block" in layer.techniques]
    plans = []
    for shallow in (False, True) if blocks else (False,):
        for fraction in (1.0, *sorted((f for f in fractions if f < 1.0), reverse=True)):  # mildest first
            params: dict[str, object] = {"precision": quantized}
            for layer in space.layers:
                spec = layer.techniques.get("channel_prune", {}).get("ratio")
                if isinstance(spec, ChoiceParam) and fraction < 1.0:
                    ratio = min(spec.choices, key=lambda c: abs(float(c) - (1.0 - fraction)))
                    params[f"{layer.name}/technique"] = "channel_prune"
                    params[f"{layer.name}/channel_prune/ratio"] = ratio
            params.update({f"{block}/technique": "skip_block" for block in blocks if shallow})
            plans.append(plan_from_params(params, space))
    return [p for p in {plan.hash: plan for plan in plans}.values() if p.layers]  # never the model itself


@dataclass(frozen=True)
class TrainedSupernet:
    supernet: Supernet
    weights: dict[str, torch.Tensor]
    steps: int  # ensemble-training steps behind these weights
    seconds: float  # what training them cost, here or in the search that trained them
    reused: bool  # found trained in the search's directory


def trained_for_search(config: SearchConfig, task: Task, model: nn.Module, say: Log) -> TrainedSupernet:
    """The search's trained supernet: reused when its directory holds one, else trained now
    (resumed from its last checkpoint when a kill cut an earlier training short)."""
    directory = supernet_dir(config)
    weights_path = directory / WEIGHTS_FILE
    reused = weights_path.is_file()
    if reused:
        say(f"supernet: reusing the trained supernet in {directory}")
    else:
        say(f"supernet: training it once for the whole search ({config.supernet.steps} ensemble steps)")
        train_supernet_job(config, resume=(directory / "train.json").exists(), log=say)
    steps, seconds = training_cost(config)
    weights = load_file(str(weights_path))
    try:
        supernet = trained_supernet(model, task.example_input(2), supernet_options(config), weights)
    except (RuntimeError, KeyError) as error:
        raise AdacompError(
            f"{weights_path}: does not fit this config's supernet ({str(error).splitlines()[0]}); "
            "change 'name' to train a new one"
        ) from None
    check_layout(directory, supernet)
    return TrainedSupernet(supernet, weights, steps, seconds, reused)


def supernet_space(
    config: SearchConfig, trained: TrainedSupernet, task: Task, model: nn.Module
) -> PreparedSpace:
    """The samplers' space: the supernet's configurations as plans, grouped like any search's
    (`space.grouping`); no sensitivity analysis (the supernet's choices are what it holds)."""
    layers = supernet_plan_space(trained.supernet, model, task.example_input(2))
    if config.techniques is not None:
        layers = layers.restricted_to(config.techniques)
    if not layers.layers:
        raise AdacompError(
            f"evaluation: supernet: the supernet of {config.task!r} holds no choice for "
            f"{', '.join(config.techniques or ('any technique',))} "
            f"({trained.supernet.layout.report().splitlines()[0]}); use evaluation: finetune"
        )
    grouping = resolve_grouping(layers, model, config.space.grouping)
    return PreparedSpace(group_layers(layers, model, grouping), layers.size(), grouping, None)

"""The agent's policy network: RLlib's action-masking PPO module plus a fixed prior.

The prior is a constant added to the logits (not a weight: it is not trained, saved or
fingerprinted). Untrained, the network's logits are near zero, so the first episodes follow
the prior: leave a layer's main technique alone with probability `keep` and leave its weights
unpruned with probability `keep`, the rest spread evenly. A uniform start compresses nearly
every layer at once, which at a budget of tens of trials mostly lands far outside any accuracy
constraint; starting near the uncompressed model, the agent learns what to compress.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

from adacomp.platform.strategies.plan_space import NONE
from adacomp.platform.strategies.rl.actions import (
    CATALOGUE,
    LATER_CHOICES,
    MAIN_CHOICES,
    SPARSITIES,
    LayerChoice,
)

PRIOR_KEY = "action_prior"


def action_prior(keep: float) -> list[float]:
    """Log-probabilities over the catalogue (before masking) of the untrained agent."""
    main_other = math.log((1 - keep) / (len(MAIN_CHOICES) - 1 + len(LATER_CHOICES)))
    prune_other = math.log((1 - keep) / (len(SPARSITIES) - 1))
    prior = []
    for choice in CATALOGUE:
        if isinstance(choice, LayerChoice):
            main = math.log(keep) if choice.technique == NONE else main_other
            if choice in LATER_CHOICES:  # one choice, no pruning levels: all of its main share
                prune = 0.0
            else:
                prune = math.log(keep) if choice.sparsity == 0 else prune_other
            prior.append(main + prune)
        else:
            prior.append(0.0)  # precisions: uniform
    return prior


class PriorMaskingModule(ActionMaskingTorchRLModule):
    def setup(self) -> None:
        super().setup()  # type: ignore[no-untyped-call]
        config: Any = self.model_config or {}
        prior = config.get(PRIOR_KEY) if isinstance(config, dict) else None
        self._prior = torch.tensor(np.asarray(prior or [0.0] * len(CATALOGUE), dtype=np.float32))

    def _mask_action_logits(self, batch: dict[str, Any], action_mask: Any) -> dict[str, Any]:
        batch[Columns.ACTION_DIST_INPUTS] = batch[Columns.ACTION_DIST_INPUTS] + self._prior
        result: dict[str, Any] = super()._mask_action_logits(batch, action_mask)
        return result

"""The search config's supernet section as the library's options: pure mapping, no side effects.

Its own module so that local training (training.py) and training on Ray (ray_training.py) both
read it without importing each other.
"""

from __future__ import annotations

from adacomp.platform.evaluate.evaluators.supernet import supernet_options
from adacomp.platform.search_config import SearchConfig
from adacomp.search_spaces.supernet import EnsembleBudget

__all__ = ["ensemble_budget", "supernet_options"]


def ensemble_budget(config: SearchConfig) -> EnsembleBudget:
    s = config.supernet
    return EnsembleBudget(
        steps=s.steps,
        batch_size=s.batch_size,
        lr=s.lr,
        sampled=s.sampled,
        distill_weight=s.distill_weight,
        checkpoint_every=s.checkpoint_every,
    )

"""The gymnasium environment: one episode walks the model's compressible layers, then picks the
precision; the finished plan is evaluated as a search trial and its utility is the reward.

The trial is not run here: the plan goes to the search's `PlanExchange`, which answers from the
cache or waits until the search's Tune trial for it has finished (compress, fine-tune, measure
on the farm). So the env runner only ever blocks, and every paid evaluation is an ordinary,
logged trial of the search.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from adacomp.platform.strategies.rl.actions import (
    LAYER_ACTIONS,
    N_ACTIONS,
    PRECISION_ACTIONS,
    plan_from_actions,
)
from adacomp.platform.strategies.rl.episode import OBS_BOUND, OBS_SIZE, EpisodeSpec, observation

# What a masked action means if a policy picks it anyway: leave the layer (or the precision) alone.
NO_OP = {False: LAYER_ACTIONS[0], True: PRECISION_ACTIONS[0]}


class PlanEnv(gym.Env[dict[str, np.ndarray], int]):
    """env_config: `spec` (EpisodeSpec) and `exchange` (a PlanExchange actor handle, or any
    object with `evaluate(plan_json) -> outcome` when run without Ray, as in unit tests)."""

    def __init__(self, env_config: dict[str, Any]) -> None:
        self.spec_: EpisodeSpec = env_config["spec"]
        self.exchange = env_config["exchange"]
        self.observation_space = gym.spaces.Dict(
            {
                "action_mask": gym.spaces.Box(0.0, 1.0, (N_ACTIONS,), dtype=np.float32),
                "observations": gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (OBS_SIZE,), dtype=np.float32),
            }
        )
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.metadata = {"render_modes": []}
        self._actions: list[int] = []
        self._storage = self._macs = 1.0
        self.last_outcome: dict[str, Any] | None = None

    def _obs(self) -> dict[str, np.ndarray]:
        step = len(self._actions)
        return {
            "action_mask": self.spec_.masks[step].copy(),
            "observations": observation(self.spec_, step, self._storage, self._macs),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._actions = []
        self._storage = self._macs = 1.0
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        spec, step = self.spec_, len(self._actions)
        action = int(action)
        if spec.masks[step][action] == 0:  # the module masks these; any other policy is mapped
            action = NO_OP[step == len(spec.space.layers)]
        before = spec.potential(self._storage, self._macs)
        self._actions.append(action)
        if step < len(spec.space.layers):
            self._storage += float(spec.storage_delta[step, action])
            self._macs += float(spec.macs_delta[step, action])
            return self._obs(), spec.potential(self._storage, self._macs) - before, False, False, {}
        plan = plan_from_actions(spec.space, self._actions)
        outcome = self._evaluate(plan.to_json(indent=None))
        self.last_outcome = outcome
        info = {"plan_hash": plan.hash, "status": outcome.get("status", "")}
        if outcome.get("status") == "closed":  # the search is over: end without a learning signal
            return self._obs_terminal(), 0.0, False, True, info
        return self._obs_terminal(), spec.reward(outcome) - before, True, False, info

    def _obs_terminal(self) -> dict[str, np.ndarray]:
        mask = np.zeros(N_ACTIONS, dtype=np.float32)
        mask[0] = 1.0
        return {"action_mask": mask, "observations": np.zeros(OBS_SIZE, dtype=np.float32)}

    def _evaluate(self, plan_json: str) -> dict[str, Any]:
        call = self.exchange.evaluate
        if hasattr(call, "remote"):
            import ray

            return dict(ray.get(call.remote(plan_json)))
        return dict(call(plan_json))

"""The `rl` strategy: an RLlib PPO agent, trained while the search runs, proposes Tune's trials.

Control flow. `algo.train()` runs in a thread of the driver; its env runners (Ray actors, in
parallel) play episodes, and each finished episode's plan goes to the `PlanExchange` actor.
Tune asks this searcher for trials; `suggest` hands it the next new plan from the exchange and
`on_trial_complete` sends the trial's outcome back, which becomes the waiting episode's reward.
So an evaluated plan is an ordinary trial of the search: same ledger, same MLflow child runs
under the same parent, same fronts as every other strategy, and the same resume.

Why PPO (new API stack): its RLModule has action masking (a layer may only take what applies
to it), it is on-policy and learns from a handful of short episodes with one terminal reward,
and its env runners sample in parallel. DQN on the new stack has no masking module and wants a
replay buffer full of transitions a few dozen trials cannot fill.

The agent's state is saved after every PPO update to `<search>/rl_agent/` (a full RLlib
checkpoint), which is what a resumed search restores and what `--init-policy` starts from. An
update is kept unless it learned from an episode the search's end cut short; the trials must
fill at least one update (budget.py), so a finished search always leaves an agent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from adacomp.errors import AdacompError
from adacomp.platform.evaluate.sensitivity import ordered_by_sensitivity
from adacomp.platform.strategies._base import SearcherSetup
from adacomp.platform.strategies.plan_space import plan_from_params
from adacomp.platform.strategies.rl.budget import agent_batch
from adacomp.platform.strategies.rl.env import PlanEnv
from adacomp.platform.strategies.rl.episode import EpisodeSpec, episode_spec
from adacomp.search_spaces import CompressionPlan

AGENT_DIR = "rl_agent"
DEFAULT_MODULE_ID = "default_policy"
START_RECORD = "rl_start.json"  # what the agent started from this run, and its weights' fingerprint
MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / DEFAULT_MODULE_ID


def weights_fingerprint(state: Mapping[str, Any]) -> str:
    """sha256 over a module's named weights: shows which policy an agent started from."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = np.ascontiguousarray(
            np.asarray(state[key].detach() if hasattr(state[key], "detach") else state[key])
        )
        digest.update(key.encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def learner_weights(algo: Any) -> Mapping[str, Any]:
    """The learner's policy (the env runners hold an inference-only copy without the value head)."""
    weights: Mapping[str, Any] = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
    return weights


def policy_module_dir(path: Path) -> Path:
    """The RLModule inside a saved agent: `path` may be the agent (`rl_agent/`) or the module."""
    path = Path(path)
    for candidate in (path / MODULE_PATH, path / AGENT_DIR / MODULE_PATH, path):
        if (candidate / "module_state.pt").exists() or any(candidate.glob("module_state*")):
            return candidate
    search_dir = path.parent if path.name == AGENT_DIR else path
    why = ""
    if (search_dir / START_RECORD).exists():  # an rl search ran there (before budget.py's check)
        why = " (that search ended before its agent's first PPO update, so it saved none)"
    raise AdacompError(
        f"rl.init_policy: {path} holds no saved agent{why}; expected a search's {AGENT_DIR}/ "
        f"directory (or its {MODULE_PATH})"
    )


def _outcome(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "utility": record.get("utility"),
        "violations": list(record.get("violations") or ()),
        "failed": bool(record.get("failed")),
        "number": record.get("number"),
    }


class RLSearcher(Searcher):
    def __init__(self, setup: SearcherSetup) -> None:
        super().__init__(metric="utility", mode="max")
        context = setup.context
        if context is None:
            raise ValueError("the rl strategy needs the search's context (config, space, model, input)")
        self.config = context.config
        self.settings = context.config.rl
        self.batch = agent_batch(context.config)
        self.seed = setup.seed
        self.state_dir = context.state_dir
        self.init_module = policy_module_dir(self.settings.init_policy) if self.settings.init_policy else None
        # The agent decides the least sensitive choices first (AMC: savings where they are cheap).
        space = context.space
        if context.sensitivity is not None:
            space = ordered_by_sensitivity(space, context.sensitivity)
        self.spec: EpisodeSpec = episode_spec(
            context.config, space, context.model, context.example_input, context.baseline
        )
        self.max_episodes = self.settings.max_episodes or 50 * setup.trials
        known = {r.plan.hash: _outcome(r.to_dict()) for r in context.history if r.duplicate_of is None}
        self._known = known
        self._next_number = 1 + max((r.number for r in context.history), default=-1)
        self._initial = [
            p.to_json(indent=None)
            for p in (plan_from_params(point, space) for point in setup.initial_points)
            if p.hash not in known
        ]
        self._live: dict[str, str] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending_metrics: list[tuple[int, dict[str, float]]] = []
        self._on_progress = context.on_progress
        self._thread: threading.Thread | None = None
        self._exchange: Any = None
        self.error: BaseException | None = None
        self.exhausted = False
        self.iterations = 0
        self.stats: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its config; this searcher lives in the driver only

    def save(self, checkpoint_path: str) -> None:
        pass  # the agent saves itself (rl_agent/); trials resume from the search's ledger

    def restore(self, checkpoint_path: str) -> None:
        pass

    # --- Tune's side ---------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:  # or Searcher.FINISHED
        self._start()
        self._flush_metrics()
        if self._initial:
            plan_json = self._initial.pop(0)
        else:
            if self.error is not None or self.exhausted:
                return Searcher.FINISHED  # type: ignore[return-value]  # Tune's sentinel string
            import ray

            taken = ray.get(self._exchange.take.remote(1))
            if not taken:
                return None
            plan_json = taken[0]
        number = self._next_number
        self._next_number += 1
        self._live[trial_id] = CompressionPlan.from_json(plan_json).hash
        return {"plan": plan_json, "trial_number": number, "seed": self.seed + number}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        key = self._live.pop(trial_id, None)
        if key is None:
            return
        record = (result or {}).get("record")
        outcome = _outcome(record) if record else {"utility": None, "violations": [], "failed": True}
        self._exchange.complete.remote(key, outcome)

    def close(self) -> None:
        """Ends the agent: waiting episodes are released, the last clean state is kept."""
        if self._thread is None:
            return
        import ray

        self._stop.set()
        self._exchange.close.remote()
        self._thread.join()
        self._thread = None
        self.stats = ray.get(self._exchange.stats.remote())
        totals = {f"rl_total_{k.removeprefix('rl_')}": v for k, v in self._stats_metrics(None).items()}
        with self._lock:  # this run's totals, episodes cut short by the end included
            self._pending_metrics.append((self.iterations, totals))
        self._flush_metrics()
        ray.kill(self._exchange)
        if self.error is not None:
            raise AdacompError(f"strategy rl: the agent stopped: {self.error}") from self.error

    # --- the agent -----------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        import ray

        from adacomp.platform.strategies.rl.exchange import PlanExchange

        exchange_actor = ray.remote(PlanExchange).options(num_cpus=0, max_concurrency=1000)
        self._exchange = exchange_actor.remote(self._known)
        self._thread = threading.Thread(target=self._train, name="adacomp-rl-agent", daemon=True)
        self._thread.start()

    def _algorithm_config(self) -> Any:
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from adacomp.platform.strategies.rl.module import PRIOR_KEY, PriorMaskingModule, action_prior

        s, steps = self.settings, self.spec.steps
        batch = self.batch.episodes_per_update * steps
        module = RLModuleSpec(
            module_class=PriorMaskingModule,
            model_config={
                "fcnet_hiddens": list(s.hidden),
                "head_fcnet_hiddens": [],
                PRIOR_KEY: action_prior(s.initial_keep),
            },
            load_state_path=str(self.init_module) if self.init_module else None,
        )
        return (
            PPOConfig()  # type: ignore[no-untyped-call]
            .environment(PlanEnv, env_config={"spec": self.spec, "exchange": self._exchange})
            .env_runners(
                num_env_runners=self.batch.env_runners,
                num_envs_per_env_runner=1,
                num_cpus_per_env_runner=0,  # they wait on trials; Tune's trials own the cores
                batch_mode="complete_episodes",
                sample_timeout_s=None,  # an episode lasts as long as its trial
            )
            .learners(num_learners=0)
            .training(
                train_batch_size_per_learner=batch,
                minibatch_size=max(steps, batch // 2),
                num_epochs=s.epochs,
                lr=s.lr,
                gamma=1.0,  # short episodes; shaping is potential-based with gamma 1
                lambda_=0.95,
                entropy_coeff=s.entropy,
            )
            .rl_module(rl_module_spec=module)
            .reporting(metrics_num_episodes_for_smoothing=self.batch.episodes_per_update)
            .debugging(seed=self.seed, log_level="ERROR")
        )

    def _train(self) -> None:
        import ray

        algo = None
        checkpoint = self.state_dir / AGENT_DIR if self.state_dir else None
        # RLlib announces the new API stack and the example masking module's deprecated base
        # class on every build; neither is news to a user of `adacomp search`.
        logging.getLogger("ray.rllib").setLevel(logging.ERROR)
        try:
            algo = self._algorithm_config().build_algo()
            source, path = "scratch", None
            if checkpoint is not None and (checkpoint / MODULE_PATH).exists():
                algo.restore_from_path(str(checkpoint))  # a resumed search: the agent goes on
                source, path = "checkpoint", checkpoint
            elif self.init_module is not None:
                source, path = "init_policy", self.init_module  # loaded by the module spec
            self.iterations = int(algo.iteration)
            if self.state_dir is not None:
                started = {
                    "from": source,
                    "path": str(path) if path else None,
                    "iteration": self.iterations,
                    "fingerprint": weights_fingerprint(learner_weights(algo)),
                }
                (self.state_dir / START_RECORD).write_text(json.dumps(started, indent=2))
            if source == "init_policy" and checkpoint is not None:
                # Its own copy at once: even a search that ends before its first update (a
                # nightly whose trials go to last night's front) hands the agent on to the next.
                algo.save_to_path(str(checkpoint))
            while not self._stop.is_set():
                result = algo.train()
                self.stats = ray.get(self._exchange.stats.remote())
                if self.stats.get("closed"):
                    break  # that update learned from `closed` episodes: keep the state before it
                # Every episode of the update was a real outcome: it is kept and saved, also
                # when the search ended while it ran (its last trial), so a search that filled
                # one batch always leaves an agent behind.
                self.iterations = int(algo.iteration)  # counts on across resumed runs
                if checkpoint is not None:
                    algo.save_to_path(str(checkpoint))
                episode_return = result.get("env_runners", {}).get("episode_return_mean")
                with self._lock:
                    self._pending_metrics.append((self.iterations, self._stats_metrics(episode_return)))
                if self._stop.is_set():
                    break
                if self.stats["episodes"] >= self.max_episodes:
                    self.exhausted = True  # the agent keeps repeating known plans: stop
                    break
        except BaseException as exc:  # surfaced by close(), in the driver's thread
            self.error = exc
        finally:
            if algo is not None:
                algo.stop()

    def _stats_metrics(self, episode_return: float | None) -> dict[str, float]:
        values = {
            "rl_episodes": float(self.stats.get("episodes", 0)),
            "rl_cache_hits": float(self.stats.get("cache_hits", 0) + self.stats.get("shared", 0)),
            "rl_plans_proposed": float(self.stats.get("proposed", 0)),
        }
        if episode_return is not None:
            values["rl_episode_return_mean"] = float(episode_return)
        return values

    def _flush_metrics(self) -> None:
        with self._lock:
            pending, self._pending_metrics = self._pending_metrics, []
        if self._on_progress is not None:
            for step, values in pending:
                self._on_progress(step, values)

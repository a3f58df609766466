"""How many episodes the agent learns from per PPO update, and whether a search's budget can
fill one update at all.

PPO learns from whole batches: until one batch of episodes is complete the agent neither
learns nor saves itself, so `--init-policy runs/<name>/rl_agent` has nothing to start from.
The env runners play a batch in parallel, each its equal share of whole episodes, so a batch
is `runners x ceil(episodes / runners)` episodes; in the worst case (no episode repeats a
known plan, which the cache answers for free) each of them is a new trial. A search whose
trials cannot fill the first batch is refused before anything runs, with the numbers.

The default batch is a fifth of the trials, between 1 and 8 episodes (rounded up to a whole
share per runner): at least five updates at any budget up to 40 trials (the examples' 40 and
60 trials give 5 and 7 updates of 8 episodes), and still a few at 6 trials, where a fixed 8
never updated. Light on purpose: `check` runs it without importing RLlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adacomp.errors import AdacompError

if TYPE_CHECKING:
    from adacomp.platform.search_config import SearchConfig

AUTO_SHARE = 5  # the default batch: a fifth of the trials ...
AUTO_MAX = 8  # ... at most this many episodes


@dataclass(frozen=True)
class AgentBatch:
    env_runners: int
    episodes_per_update: int  # what one update samples: a whole number of episodes per runner


def agent_batch(config: SearchConfig) -> AgentBatch:
    """The env runners and episodes per update the agent of this search uses.

    `rl.env_runners` unset: one per concurrent trial (`concurrency`), never more than trials.
    `rl.episodes_per_update` unset: a fifth of `trials`, 1 to 8."""
    settings = config.rl
    runners = settings.env_runners or max(1, min(config.concurrency, config.trials))
    wanted = settings.episodes_per_update or max(1, min(AUTO_MAX, config.trials // AUTO_SHARE))
    return AgentBatch(runners, runners * -(-wanted // runners))


def check_budget(config: SearchConfig) -> AgentBatch:
    """Refuses (one line) a search whose trials may end before the agent's first update."""
    batch = agent_batch(config)
    if batch.episodes_per_update > config.trials:
        settings = config.rl
        asked = (
            f"rl.episodes_per_update {settings.episodes_per_update}"
            if settings.episodes_per_update
            else "the default batch"
        )
        raise AdacompError(
            f"rl: {asked} with {batch.env_runners} env runners means {batch.episodes_per_update} "
            f"episodes per PPO update, more than trials {config.trials} can give: the agent would "
            f"never update nor save itself; raise trials to {batch.episodes_per_update} or lower "
            "rl.episodes_per_update or rl.env_runners (left unset, both follow the trials)"
        )
    return batch

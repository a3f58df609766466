"""The `rl` search strategy (AdaDeep's agent): an RLlib PPO agent, trained while the search runs,
whose episodes walk the model's layers and whose plans run as the search's Tune trials.

actions.py (the fixed, masked action catalogue), episode.py (observations, cost estimates,
shaping, reward), env.py (the gymnasium environment), exchange.py (episodes meet trials),
module.py (the policy network's prior), searcher.py (the Tune searcher that runs the agent).
"""

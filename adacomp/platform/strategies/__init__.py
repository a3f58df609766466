"""Search strategies: the base class, the registry, the sampler-parameter mapping, the Optuna
searcher and the RL agent (`rl/`).
"""

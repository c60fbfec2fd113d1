"""The training layer: trains one config on one or several seeds and evaluates it.

Owns the SB3 path (``training``: train_seed on any env; ``ppo_fast``, ``evaluation``,
``sb3_state``), the torch-native trainer on the batched tasks (``torch_ppo`` the algorithm,
``torch_train`` its loop, ``torch_policy``, ``torch_rollout``, ``torch_state``) and seed-job
checkpoints (``checkpoint``). Runs inside worker processes: may import torch, SB3, gymnasium,
envs and automl.core; never Optuna, never the search, run or exec layers.
"""

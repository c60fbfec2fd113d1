"""The training layer: trains one config on one or several seeds and evaluates it.

One seed-job loop (``loop``: steps, evaluation schedule, deadline, channel and stop reasons, checkpoints,
schedules, the online tuner's safe points, results) over a small adapter per trainer: the SB3 trainer
(``sb3_train``: ``train_seed`` on any env; ``sb3_ppo`` the batched PPO, ``sb3_state`` its full state,
``sb3_pbt`` PBT members) and the torch-native trainer on the batched tasks (``torch_train``; ``torch_ppo``
the algorithm over a ``SeedBatch``, ``torch_policy``, ``torch_normalize``, ``torch_report``, ``torch_state``,
``torch_pbt``). Beside them: ``result`` (SeedResult), ``evaluation``, ``checkpoint`` (the files) and ``tuning``
(online tuning inside the loop). The modules are layered with no cycle (an import-linter contract in
pyproject.toml). Runs inside worker processes: may import torch, SB3, gymnasium, envs and automl.core;
never Optuna, never the search, run or exec layers.
"""

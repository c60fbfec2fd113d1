"""The search layer: what is searched and who proposes configs and learns from their scores.

Owns the space (``space``: YAML ⇄ Optuna distributions, suggest, encode/decode, grid, constraint
checks), presets (``presets``), samplers and pruners by name (``strategies``), the run's Optuna
studies and storage (``studies``), Optuna's trial states by automl's names (``states``) and the
ask/tell owners: ``hp.HPSearch`` (the HP sampler study, warm-started from the priors, the grid walk,
constraint rejection) and ``reward.RewardSearch`` (CMA-ES over the reward weights, and the
reward-hacking alarm), the PBT rules (``pbt``) and online tuning's decisions (``online``, with
``online_log`` for replay plans and evolved recipes). May import Optuna and automl.core; never the run, exec, train, analysis, api
or cli layers, never torch.
"""

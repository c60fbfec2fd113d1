"""The search layer: who proposes configs and learns from their scores.

Owns the ask/tell owners of a run: ``hp.HPSearch`` (the HP sampler study, warm-started from the
space's priors, the grid walk, constraint rejection) and ``reward.RewardSearch`` (CMA-ES over the
reward weights, and the reward-hacking alarm). May import: optuna, automl.config, automl.space,
automl.studies, automl.scoring, automl.errors. Never imports the run layer, trainers or torch.
"""

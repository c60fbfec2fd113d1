"""--mode stage (the default): per cycle an HP phase, then a reward phase, under one budget.

The HP phase searches PPO hyperparameters with the incumbent's reward weights; the reward phase searches
the reward weights (CMA-ES) with the incumbent's HPs; --reward-generations cycles (at least one). Every
answer is the staged default of ``automl.run.modes.base.Mode``.
"""
from __future__ import annotations

from automl.run.modes.base import Mode


class StageMode(Mode):
    """HP phases and reward phases in turn."""

    name = "stage"
    summary = "default: HP phases and reward generations in turn"


MODE = StageMode()

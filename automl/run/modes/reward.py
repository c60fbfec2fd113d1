"""--mode reward: --reward-generations reward phases (the space's prior HPs), then the re-checks."""
from __future__ import annotations

from automl.run.modes.base import Mode, refuse


class RewardMode(Mode):
    """The reward-weight search alone."""

    name = "reward"
    hp_phases = False

    def check(self, cfg) -> None:
        if cfg.reward_generations == 0:
            refuse("--reward-generations", "must be >= 1 with --mode reward")

    def cycles(self, cfg) -> int:
        return cfg.reward_generations


MODE = RewardMode()

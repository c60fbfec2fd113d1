"""--mode hp: one HP phase (the default reward weights), then the re-checks; no reward terms needed."""
from __future__ import annotations

from automl.run.modes.base import Mode, refuse


class HPMode(Mode):
    """The HP search alone, in one cycle."""

    name = "hp"
    reward_phases = False
    needs_reward_terms = False

    def check(self, cfg) -> None:
        if cfg.hp_trials == 0 and not cfg.max_trials:
            refuse("--hp-trials", "must be >= 1 with --mode hp")

    def cycles(self, cfg) -> int:
        return 1


MODE = HPMode()

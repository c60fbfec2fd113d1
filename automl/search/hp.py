"""The HP search: ask/tell over the HP sampler study ("automl-hp"), warm-started from the priors.

A proposal is (ticket, params): the ticket names the sampler trial to tell later. The grid method
is walked here, in order (Optuna's GridSampler ignores enqueued trials). A proposal that breaks a
constraint, or that cannot become a PPO config, is told FAIL at once and reported as rejected.
"""
from __future__ import annotations

from functools import cached_property
from typing import Mapping

import optuna

from automl.search import space as space_mod, studies
from automl.core.config import SpaceSpec, to_ppo_setup
from automl.core.errors import AutoMLError

Ticket = tuple  # (sampler study, trial id)


class HPSearch:
    """Proposes PPO hyperparameters; learns from the scores it is told."""

    def __init__(self, study: optuna.Study, spec: SpaceSpec, *, space_path: str, method: str):
        self.study, self.spec, self.space_path, self.method = study, spec, space_path, method

    def warm_start(self) -> None:
        """A new run's first proposal is the space's prior config (the baseline); not for grids."""
        if self.method != "grid":
            self.study.enqueue_trial(space_mod.encode_params(self.spec, space_mod.prior_params(self.spec)))

    def ask(self, grid_cursor: int) -> tuple[Ticket, dict] | None:
        """The next params, or None when the grid is walked (``grid_cursor``: HP configs proposed so far)."""
        if self.method == "grid":
            if grid_cursor >= len(self._grid):
                return None
            self.study.enqueue_trial(space_mod.encode_params(self.spec, self._grid[grid_cursor]))
        trial = self.study.ask()
        return (self.study, trial._trial_id), space_mod.suggest(trial, self.spec)

    @cached_property
    def _grid(self) -> list[dict]:
        """The grid's points in order (up to 100k, constraints applied): enumerated once, not per ask."""
        return space_mod.grid(self.spec)

    def rejection(self, params: Mapping) -> str | None:
        """Why ``params`` cannot be trained (a violated constraint, an invalid PPO config), or None."""
        violated = space_mod.violated_constraints(self.spec, params)
        if violated:
            return "constraint: " + violated[0]
        try:
            to_ppo_setup({**self.spec.fixed, **params}, path=self.space_path)
        except AutoMLError as exc:
            return str(exc)
        return None

    @staticmethod
    def tell(ticket: Ticket, value, state: str, violations: list[float] | None = None) -> None:
        """The outcome: complete/failed with its value (a failed config's is the worst), pruned, rejected."""
        studies.tell_sampler(ticket[0], ticket[1], value, state, violations)

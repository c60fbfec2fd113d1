"""The HP search: ask/tell over the HP sampler study ("automl-hp"), warm-started from the priors.

A proposal (``automl.search.owner.Proposal``) carries the params; its reward weights are left to the
phase (the incumbent's). The grid method is walked here, in order (Optuna's GridSampler ignores enqueued
trials). A proposal that breaks a constraint, or that cannot become a PPO config (``rejection``), is told
REJECTED at once and reported as rejected.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable, Mapping

import optuna

from automl.search import space as space_mod, studies
from automl.core.config import SpaceSpec, to_ppo_setup
from automl.core.errors import AutoMLError
from automl.search.owner import Outcome, Proposal


class HPSearch:
    """Proposes PPO hyperparameters; learns from the scores it is told (a ``SearchOwner``).

    ``proposed()``: how many HP configs the run proposed so far, rejected ones included (the grid's
    cursor, so that a resumed run walks on where the killed one stopped)."""

    def __init__(self, study: optuna.Study, spec: SpaceSpec, *, space_path: str, method: str,
                 proposed: Callable[[], int] = lambda: 0):
        self.study, self.spec, self.space_path, self.method = study, spec, space_path, method
        self.proposed = proposed

    def warm_start(self) -> None:
        """A new run's first proposal is the space's prior config (the baseline); not for grids."""
        if self.method != "grid":
            self.study.enqueue_trial(space_mod.encode_params(self.spec, space_mod.prior_params(self.spec)))

    def ask(self) -> Proposal | None:
        """The next params, or None when the grid is walked."""
        if self.method == "grid":
            cursor = self.proposed()
            if cursor >= len(self._grid):
                return None
            self.study.enqueue_trial(space_mod.encode_params(self.spec, self._grid[cursor]))
        trial = self.study.ask()
        return Proposal((self.study, trial._trial_id), params=space_mod.suggest(trial, self.spec))

    @cached_property
    def _grid(self) -> list[dict]:
        """The grid's points in order (up to 100k, constraints applied): enumerated once, not per ask."""
        return space_mod.grid(self.spec)

    def rejection(self, params: Mapping) -> str | None:
        """Why ``params`` cannot be trained in this space (see ``rejection``), or None."""
        return rejection(self.spec, params, self.space_path)

    @staticmethod
    def tell(outcome: Outcome) -> None:
        """The outcome: complete/failed with its value (a failed config's is the worst), pruned, rejected."""
        studies.tell_outcome(outcome)

    @staticmethod
    def alarm(candidate: dict, incumbent: dict | None, tuned: list[dict]) -> dict | None:
        """HPs alone cannot hack the reward: no alarm."""
        return None


def rejection(spec: SpaceSpec, params: Mapping, space_path: str) -> str | None:
    """Why ``params`` cannot be trained (a violated constraint of ``spec``, an invalid PPO config), or None."""
    violated = space_mod.violated_constraints(spec, params)
    if violated:
        return "constraint: " + violated[0]
    try:
        to_ppo_setup({**spec.fixed, **params}, path=space_path)
    except AutoMLError as exc:
        return str(exc)
    return None

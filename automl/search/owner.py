"""The search-owner interface: what a run's tuning phase asks for configs and tells their outcomes.

The HP search (``hp.py``), the reward search (``reward.py``) and the joint search (``joint.py``) each
own one sampler study and implement ``SearchOwner``; a phase holds one owner and never asks which
kind it is. A proposal leaves ``params`` or ``weights`` as None when its owner does not search them:
the phase then trains the incumbent's (the HP search keeps the incumbent's reward weights, the reward
search the incumbent's HPs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import optuna

Ticket = tuple  # (sampler study, trial id): names the sampler trial a proposal came from


@dataclass(frozen=True)
class Proposal:
    """One config to train, as its owner proposed it.

    :param ticket: the sampler trial to tell the outcome to
    :param params: PPO hyperparameters in search coordinates; None: the incumbent's
    :param weights: every reward term's weight; None: the incumbent's
    """

    ticket: Ticket
    params: dict | None = None
    weights: dict | None = None


@dataclass(frozen=True)
class Outcome:
    """How a proposed config ended, as its owner is told.

    :param ticket: the proposal's ticket
    :param value: the objective value (a failed config's is the worst; None when pruned or rejected)
    :param state: ``State.COMPLETE``, ``State.PRUNED`` or ``State.REJECTED`` (automl.core.record)
    :param violations: --constraint violations (<= 0 is feasible), or None
    """

    ticket: Ticket
    value: float | list | None
    state: str
    violations: list[float] | None = None


@runtime_checkable
class SearchOwner(Protocol):
    """Proposes configs from one sampler study and learns from their outcomes."""

    study: optuna.Study  # its sampler study (resume re-attaches in-flight proposals by study name)

    def warm_start(self) -> None:
        """A new run's first proposal is the baseline (the space's priors, the default weights)."""

    def ask(self) -> Proposal | None:
        """The next config to train, or None when the search has nothing left."""

    def tell(self, outcome: Outcome) -> None:
        """The outcome of a proposal."""

    def alarm(self, candidate: dict, incumbent: dict | None, tuned: list[dict]) -> dict | None:
        """An alarm about a complete config (e.g. reward hacking) against the incumbent before it, or None."""

"""The joint search (``--mode joint``): one sampler over the PPO hyperparameters and the reward weights
together (the "automl-joint" sampler study), as Dierkes et al. (RLC 2024) recommend.

A proposal carries both: the HPs suggested as in the HP search, the searched weights
as ``reward.<term>`` in the same trial, so TPE (or CMA-ES, random, QMC) models how they interact.
With the run's pruner (Hyperband by default in this mode) it is BOHB-style multi-fidelity search.
The first proposal of a new run is the baseline: the space's priors with the default weights.
"""
from __future__ import annotations

from typing import Mapping

import optuna

from automl.core.config import SpaceSpec
from automl.search import space as space_mod, studies
from automl.search.owner import Outcome, Proposal
from automl.search.reward import RewardSearch, weight_distributions

STUDY_NAME = "automl-joint"  # its sampler study in the run's storage


class JointSearch:
    """Proposes HPs and reward weights together; learns from the scores it is told (a ``SearchOwner``)."""

    def __init__(self, study: optuna.Study, spec: SpaceSpec, terms: Mapping[str, Mapping],
                 default_weights: Mapping[str, float]):
        self.study, self.spec = study, spec
        self.default_weights = dict(default_weights)
        self.weights = weight_distributions(terms)  # reward.<term> -> FloatDistribution (searched terms only)

    def distributions(self) -> dict:
        """Every coordinate of the joint space with its bounds: the HPs' and the searched weights'."""
        return {**space_mod.distributions(self.spec), **self.weights}

    def warm_start(self) -> None:
        """A new run's first proposal: the priors and the default weights (the baseline)."""
        prior = space_mod.encode_params(self.spec, space_mod.prior_params(self.spec))
        weights = {name: self.default_weights[name.split(".", 1)[1]] for name in self.weights}
        self.study.enqueue_trial({**prior, **weights})

    def ask(self) -> Proposal:
        """The next HPs and weights: unsearched terms keep their default weight."""
        trial = self.study.ask()
        params = space_mod.suggest(trial, self.spec)
        weights = dict(self.default_weights)
        for name, dist in self.weights.items():
            weights[name.split(".", 1)[1]] = trial.suggest_float(name, dist.low, dist.high)
        return Proposal((self.study, trial._trial_id), params=params, weights=weights)

    @staticmethod
    def tell(outcome: Outcome) -> None:
        """The outcome: complete/failed with its value (a failed config's is the worst), pruned, rejected."""
        studies.tell_outcome(outcome)

    # searched weights can be hacked: the reward search's alarm watches them here too
    alarm = staticmethod(RewardSearch.alarm)

"""The torch trainer learns as the SB3 path does (slow: run with ``pytest -m slow tests/slow``).

CartPole with configs/spaces/cartpole.yaml's priors reaches >= 475 within the steps the SB3 path's
test gives itself (tests/test_training.py::test_good_config_solves_batched_cartpole: 300k); three
seeds trained as one batch all get there too.
"""
from __future__ import annotations

import pytest

from automl.core.config import load_space
from automl.search.space import default_space_path, prior_params
from automl.train.torch_train import train_seed_torch, train_seeds_torch

pytestmark = pytest.mark.slow


def _prior(task: str) -> dict:
    spec = load_space(default_space_path(task))
    params = {**spec.fixed, **prior_params(spec)}
    params.pop("seed", None)
    return params


def test_prior_config_solves_batched_cartpole():
    result = train_seed_torch(_prior("cartpole"), env="cartpole", seed=0, total_steps=300_000, eval_every=20_000,
                              device="cpu")
    assert result.state == "complete"
    assert result.episode_reward_mean >= 475, result.evals  # mean of the last 3 evaluations


def test_three_batched_seeds_solve_batched_cartpole():
    results = train_seeds_torch(_prior("cartpole"), env="cartpole", seeds=[0, 1, 2], total_steps=300_000,
                                eval_every=20_000, device="cpu")
    assert [r.state for r in results] == ["complete"] * 3
    assert all(r.episode_reward_mean >= 475 for r in results), [r.evals for r in results]

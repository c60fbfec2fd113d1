"""What a seed job returns (``SeedResult``), the one definition of a seed's value, and the config helpers
both trainers share (search params -> PPOSetup, TensorBoard's hparams).

A seed's result is ``seed_value``: the mean true metric of its last ``LAST_EVALS`` evaluations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from automl.core.config import PPOSetup
from automl.train.evaluation import EvalStats

LAST_EVALS = 3
STATES = ("complete", "pruned", "stopped_at_deadline", "failed")


def seed_value(values: Sequence[float], last: int = LAST_EVALS) -> float | None:
    """The one definition of a seed's result: mean of its last ``last`` evaluations.

    Not the final point alone (one noisy evaluation) and not the maximum (rewards lucky
    spikes and would make pruning and ranking optimistic). None when there is no
    evaluation: results carry no NaN, which the executor would read as a crashed job.
    """
    tail = [float(v) for v in values][-last:]
    return float(np.mean(tail)) if tail else None


@dataclass(frozen=True)
class SeedResult:
    """What one (config, seed) run produced: plain numbers, safe for YAML and Optuna user_attrs."""

    seed: int
    state: str  # complete | pruned | stopped_at_deadline | failed
    stop_reason: str  # step_budget | deadline | <the stop request's text> | non_finite | error
    episode_reward_mean: float | None  # true metric: seed_value of the evaluations; None if none/failed
    success_rate: float | None  # None when the task has no success notion
    shaped_return: float | None  # return under the searched reward weights
    reference_return: float | None  # return under the task's reference weights
    terms: dict = field(default_factory=dict)
    steps: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    evals: list = field(default_factory=list)  # [[steps, true_metric], ...]
    reason: str | None = None  # human-readable detail for failures
    resumed_from: int | None = None  # steps of the checkpoint this run continued from; None: started at 0
    checkpoint_note: str | None = None  # why a checkpoint was ignored / could not be saved; None: nothing to say
    params: int | None = None  # the policy's parameter count (actor and critic)
    peak_memory_mb: float | None = None  # the job's peak: CUDA max allocated on a GPU, else the worker's peak RSS (MiB)

    def to_dict(self) -> dict:
        """A plain dict (lists, floats, ints, strings) for YAML / JSON / the executor."""
        return asdict(self)


def seed_result(seed: int, state: str, stop_reason: str, evals: list[EvalStats], **timing) -> SeedResult:
    """Aggregate evaluations into a SeedResult (a failed run has no value: the driver scores it worst)."""
    usable = [] if state == "failed" else evals
    tail = usable[-LAST_EVALS:]
    successes = [e.success_rate for e in tail if e.success_rate is not None]
    term_names = sorted({name for e in tail for name in e.terms})
    return SeedResult(
        seed=int(seed),
        state=state,
        stop_reason=str(stop_reason),  # a plain str (a Stop is a str subclass YAML cannot write)
        episode_reward_mean=seed_value([e.true_metric for e in usable]),
        success_rate=float(np.mean(successes)) if successes else None,
        shaped_return=seed_value([e.shaped_return for e in usable]),
        reference_return=seed_value([e.reference_return for e in usable]),
        terms={n: seed_value([e.terms[n] for e in tail if n in e.terms]) for n in term_names},
        evals=[[int(e.steps), float(e.true_metric)] for e in evals],
        **timing,
    )


def to_setup(params: Mapping | PPOSetup) -> PPOSetup:
    """Search params (either naming) -> PPOSetup, only through automl.core.config.to_ppo_setup."""
    if isinstance(params, PPOSetup):
        return params
    from automl.core.config import to_ppo_setup

    return to_ppo_setup(params)


def hparams(params: Mapping | PPOSetup, reward_weights: Mapping | None) -> dict:
    """The config as TensorBoard's HParams table shows it (reward weights as ``reward.<term>``)."""
    base = dict(params) if not isinstance(params, PPOSetup) else {**params.ppo_kwargs, "num_envs": params.num_envs}
    base.pop("policy_kwargs", None)
    return {**base, **{f"reward.{k}": v for k, v in (reward_weights or {}).items()}}

"""Deterministic evaluation on separate eval envs: one evaluation's statistics (``EvalStats``) and SB3's
``evaluate``; when to evaluate is the seed-job loop's business (``automl.train.loop``).

Eval envs are seeded ``seed + EVAL_SEED_OFFSET``, so they never share initial states with the training envs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

TRUE_METRICS = ("success_rate", "reference_return")
EVAL_SEED_OFFSET = 10_000  # eval envs never share initial states with the training envs


@dataclass(frozen=True)
class EvalStats:
    """One evaluation: means over its episodes; ``true_metric`` is what the search optimises."""

    steps: int
    true_metric: float
    shaped_return: float
    reference_return: float
    success_rate: float | None
    terms: dict[str, float] = field(default_factory=dict)
    episodes: int = 0
    true_metric_se: float | None = None  # standard error of true_metric over the episodes
    reference_return_se: float | None = None  # standard error of reference_return over the episodes
    # per eval env, in env order (NaN: its episode did not finish): {"true_metric": [...], "shaped_return": [...],
    # "reference_return": [...], "success_rate": [...] (tasks with one)}. Every evaluation of a seed starts its
    # envs from the same states, so two policies evaluated at the same seed can be compared episode by episode
    # (online tuning's branches)
    per_episode: dict[str, list[float]] | None = field(default=None, repr=False)

    def episode_values(self, name: str) -> list[float] | None:
        """The per-episode values of metric ``name`` (an ``automl.core.tune_schema.EVAL_METRICS`` field), in
        eval-env order; None when not recorded."""
        return None if self.per_episode is None else self.per_episode.get(name)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def success_se(rate: float, n: int) -> float:
    """Standard error of a success rate over ``n`` episodes, Agresti-Coull style (two successes and two
    failures added), so 0/32 or 32/32 is not read as certain: ~0.038 at n = 32, not 0."""
    p = (rate * n + 2.0) / (n + 4.0)
    return math.sqrt(p * (1.0 - p) / (n + 4.0))


def _summarize_episodes(by_env: dict[int, dict], n_envs: int, steps: int, true_metric: str) -> EvalStats:
    """Turn the final-step infos of finished eval episodes (by eval env index) into one EvalStats."""
    infos = [by_env[i] for i in sorted(by_env)]
    shaped = [float(info["episode"]["r"]) for info in infos]
    # Gymnasium ids without a reward wrapper: the original return IS the reference return.
    reference = [float(info.get("true_return", info["episode"]["r"])) for info in infos]
    successes = [float(info["is_success"]) for info in infos if info.get("is_success") is not None]
    success_rate = _mean(successes) if successes else None
    term_names = sorted({name for info in infos for name in info.get("terms", {})})
    terms = {name: _mean([float(info["terms"][name]) for info in infos if name in info.get("terms", {})]) for name in term_names}
    value = (success_rate if success_rate is not None else math.nan) if true_metric == "success_rate" else _mean(reference)
    ref_se = float(np.std(reference, ddof=1) / math.sqrt(len(reference))) if len(reference) > 1 else None
    if true_metric == "success_rate":
        se = success_se(success_rate, len(successes)) if success_rate is not None else None  # None iff no successes
    else:
        se = ref_se

    def column(get) -> list[float]:
        return [float(get(by_env[i])) if i in by_env and get(by_env[i]) is not None else math.nan for i in range(n_envs)]

    per_episode = {"shaped_return": column(lambda info: info["episode"]["r"]),
                   "reference_return": column(lambda info: info.get("true_return", info["episode"]["r"]))}
    if successes:
        per_episode["success_rate"] = column(lambda info: info.get("is_success"))
    if true_metric != "success_rate" or successes:
        per_episode["true_metric"] = per_episode["success_rate" if true_metric == "success_rate" else "reference_return"]
    return EvalStats(steps, value, _mean(shaped), _mean(reference), success_rate, terms, len(infos), se, ref_se,
                     per_episode)


def evaluate(
    model: Any,
    eval_env: Any,
    *,
    seed: int,
    steps: int,
    true_metric: str,
    deadline: float | None = None,
    max_env_steps: int = 100_000,
) -> EvalStats | None:
    """Run one deterministic episode per eval env (re-seeded with ``seed``, so every
    evaluation of a run starts from the same states) and summarize them.

    Returns None when ``deadline`` passes first. Envs that never finish within
    ``max_env_steps`` are left out rather than hanging the trial.
    """
    eval_env.seed(seed)
    obs = eval_env.reset()
    finished = np.zeros(eval_env.num_envs, dtype=bool)
    episode_infos: dict[int, dict] = {}
    for _ in range(max_env_steps):
        if deadline is not None and time.time() >= deadline:
            return None
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = eval_env.step(actions)
        for i in np.flatnonzero(dones & ~finished):
            episode_infos[int(i)] = infos[i]
        finished |= dones
        if finished.all():
            break
    return _summarize_episodes(episode_infos, eval_env.num_envs, steps, true_metric)


def hparam_values(values: Mapping[str, Any]) -> dict[str, float | str | bool]:
    """TensorBoard HParams accept only scalars and strings: lists become '256-128-64'."""
    out: dict[str, float | str | bool] = {}
    for key, value in values.items():
        if isinstance(value, bool | str) or value is None:
            out[key] = "None" if value is None else value
        elif isinstance(value, int | float):
            out[key] = float(value) if isinstance(value, float) else int(value)
        elif isinstance(value, list | tuple):
            out[key] = "-".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out

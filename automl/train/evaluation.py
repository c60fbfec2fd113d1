"""Deterministic evaluation on separate eval envs, and the SB3 callback that schedules it.

Part of the training layer (may import SB3). The callback evaluates, reports to the driver's
channel, obeys stop requests and the deadline; it never decides pruning itself.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam
from stable_baselines3.common.vec_env import VecEnv

TRUE_METRICS = ("success_rate", "reference_return")


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


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def success_se(rate: float, n: int) -> float:
    """Standard error of a success rate over ``n`` episodes, Agresti-Coull style (two successes and two
    failures added), so 0/32 or 32/32 is not read as certain: ~0.038 at n = 32, not 0."""
    p = (rate * n + 2.0) / (n + 4.0)
    return math.sqrt(p * (1.0 - p) / (n + 4.0))


def _summarize_episodes(infos: list[dict], steps: int, true_metric: str) -> EvalStats:
    """Turn the final-step infos of finished eval episodes into one EvalStats."""
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
        se = success_se(success_rate, len(successes)) if successes else None
    else:
        se = ref_se
    return EvalStats(steps, value, _mean(shaped), _mean(reference), success_rate, terms, len(infos), se, ref_se)


def evaluate(
    model: Any,
    eval_env: VecEnv,
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
    episode_infos: list[dict] = []
    for _ in range(max_env_steps):
        if deadline is not None and time.time() >= deadline:
            return None
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = eval_env.step(actions)
        for i in np.flatnonzero(dones & ~finished):
            episode_infos.append(infos[i])
        finished |= dones
        if finished.all():
            break
    return _summarize_episodes(episode_infos, steps, true_metric)


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


class TrialCallback(BaseCallback):
    """Evaluates every ``eval_every`` steps (after an update), reports to ``channel``, and stops
    training on a stop request (state ``pruned``) or at ``deadline`` (``stopped_at_deadline``).
    With ``checkpoint``, calls it every ``checkpoint_every`` steps at the same rollout boundary,
    after that boundary's evaluation, unless training is stopping.

    ``state`` stays None while training may continue; SB3 stops when ``_on_step`` returns False.
    """

    def __init__(
        self,
        evaluator: Callable[[int, float | None], EvalStats | None],
        *,
        eval_every: int,
        deadline: float | None,
        channel: Any = None,
        hparams: Mapping[str, Any] | None = None,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_every: int | None = None,
    ):
        super().__init__(verbose=0)
        self.evaluator = evaluator
        self.eval_every = eval_every
        self.deadline = deadline
        self.channel = channel
        self.hparams = dict(hparams or {})
        self.evals: list[EvalStats] = []
        self.eval_s = 0.0
        self.state: str | None = None
        self.stop_reason: str | None = None
        self._next_eval = eval_every
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self._next_checkpoint = checkpoint_every

    def stop(self, state: str, reason: str) -> None:
        """Ask training to stop at the next env step (first reason wins)."""
        if self.state is None:
            self.state, self.stop_reason = state, reason

    def _on_training_start(self) -> None:
        if self.hparams:
            # metric_dict names the scalar TensorBoard pairs with the HParams table.
            self.logger.record(
                "hparams",
                HParam(hparam_values(self.hparams), {"eval/true_metric": 0.0}),
                exclude=("stdout", "log", "json", "csv"),
            )

    def _on_rollout_start(self) -> None:
        # Called right after each update, so the evaluated policy is the freshly trained one.
        if self.num_timesteps >= self._next_eval and self.num_timesteps > 0:
            self._next_eval = (self.num_timesteps // self.eval_every + 1) * self.eval_every
            self.run_evaluation()
        self._poll_channel()
        if (self.checkpoint is not None and self.checkpoint_every and self.state is None
                and self.num_timesteps >= self._next_checkpoint):
            self._next_checkpoint = (self.num_timesteps // self.checkpoint_every + 1) * self.checkpoint_every
            self.checkpoint()

    def _on_step(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            self.stop("stopped_at_deadline", "deadline")
        return self.state is None

    def run_evaluation(self) -> EvalStats | None:
        """Evaluate now, log to TensorBoard, report to the channel; None if the deadline hit."""
        start = time.time()
        stats = self.evaluator(self.num_timesteps, self.deadline)
        self.eval_s += time.time() - start
        if stats is None:
            self.stop("stopped_at_deadline", "deadline")
            return None
        self.evals.append(stats)
        self.logger.record("eval/true_metric", stats.true_metric)
        self.logger.record("eval/shaped_return", stats.shaped_return)
        self.logger.record("eval/reference_return", stats.reference_return)
        if stats.success_rate is not None:
            self.logger.record("eval/success_rate", stats.success_rate)
        for name, value in stats.terms.items():
            self.logger.record(f"eval/terms/{name}", value)
        if self.channel is not None:
            self.channel.report({"eval_index": len(self.evals) - 1, "steps": stats.steps, "value": stats.true_metric})
            self._poll_channel()
        return stats

    def state_dict(self) -> dict:
        """The evaluations so far and the schedule position (plain values, for checkpoints)."""
        return {"evals": [asdict(e) for e in self.evals], "next_eval": int(self._next_eval), "eval_s": float(self.eval_s)}

    def load_state_dict(self, state: Mapping[str, Any], steps: int) -> None:
        """Continue at ``steps`` from ``state_dict()``: later evaluations are numbered after the restored ones."""
        self.evals = [EvalStats(**e) for e in state["evals"]]
        self._next_eval = int(state["next_eval"])
        self.eval_s = float(state["eval_s"])
        if self.checkpoint_every:
            self._next_checkpoint = (int(steps) // self.checkpoint_every + 1) * self.checkpoint_every

    def _poll_channel(self) -> None:
        """Obey the driver: a stop request prunes, unless it says the budget ran out."""
        if self.channel is None or not self.channel.stop_requested():
            return
        reason = str(self.channel.stop_reason() or "stop requested")
        self.stop("stopped_at_deadline" if "deadline" in reason.lower() else "pruned", reason)

"""The SB3 trainer: ``train_seed`` trains one (config, seed) with SB3 PPO on any env and returns a SeedResult.

``SB3Trainer`` is the seed-job loop's adapter (``automl.train.loop``) over ``BatchedPPO``: it drives the
algorithm with its own pieces, exactly as ``OnPolicyAlgorithm.learn`` does (``_setup_learn`` once, then
per chunk ``collect_rollouts``, ``_update_current_progress_remaining``, ``dump_logs`` and ``train``), so
results are those of ``learn()``; the loop owns evaluations, stop requests, checkpoints and schedules.
``train_seed`` is a pure function of its arguments (PureJaxRL style): it reads no globals and no state
files, so the executor can run it in any process, retry it, or ship it elsewhere. The SB3 modules of
this layer are ``sb3_*`` (and ``evaluation``, whose ``evaluate`` takes an SB3 model).
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Mapping, Sequence

import gymnasium as gym
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from automl.core.config import PPOSetup
from automl.train import checkpoint, loop, sb3_state
from automl.train.evaluation import EVAL_SEED_OFFSET, EvalStats, evaluate, hparam_values
from automl.train.result import SeedResult, hparams, to_setup
from automl.train.sb3_ppo import BatchedPPO, NonFiniteError

# Words in torch/SB3 error messages that mean "the numbers blew up", not "the code is wrong"
# (e.g. "...found invalid values", "probability tensor contains either `inf`, `nan`...").
_NON_FINITE_MESSAGE = re.compile(r"\b(nan|inf)\b|invalid values", re.IGNORECASE)


def _batched_tasks() -> tuple[str, ...]:
    try:
        import envs
    except ImportError:
        return ()
    return tuple(getattr(envs, "TASKS", ()))


def _gym_vec(env_id: str, num_envs: int, reward_weights: Mapping | None) -> VecEnv:
    """DummyVecEnv of a gymnasium id; Monitor (or RewardTermsWrapper) supplies episode infos."""

    def make() -> gym.Env:
        env = gym.make(env_id)
        if reward_weights:
            from envs import RewardTermsWrapper

            return RewardTermsWrapper(env, weights=dict(reward_weights))
        return Monitor(env)

    return DummyVecEnv([make] * num_envs)


def make_env_pair(
    env: str, *, num_envs: int, eval_episodes: int, seed: int, device: str, reward_weights: Mapping | None
) -> tuple[VecEnv, VecEnv, str]:
    """(train VecEnv, eval VecEnv, true metric name) for a batched task or a gymnasium id."""
    if env in _batched_tasks():
        import envs

        weights = dict(reward_weights) if reward_weights else None
        train_env = envs.make_vec(env, num_envs, device=device, seed=seed, reward_weights=weights)
        eval_env = envs.make_vec(env, eval_episodes, device=device, seed=seed + EVAL_SEED_OFFSET, reward_weights=weights)
        return train_env, eval_env, envs.reward_config(env)["true_metric"]
    train_env = _gym_vec(env, num_envs, reward_weights)
    eval_env = _gym_vec(env, eval_episodes, reward_weights)
    return train_env, eval_env, "reference_return"


def _build_model(setup: PPOSetup, train_env: VecEnv, *, seed: int, device: str, tb_dir: str | None) -> BatchedPPO:
    kwargs = dict(setup.ppo_kwargs)
    if setup.learning_rate_schedule == "linear":
        kwargs["learning_rate"] = LinearSchedule(float(kwargs.get("learning_rate", 3e-4)), 0.0, 1.0)
    return BatchedPPO(
        kwargs.pop("policy", "MlpPolicy"), train_env, seed=seed, device=device, tensorboard_log=tb_dir, verbose=0, **kwargs
    )


def _is_non_finite(exc: Exception) -> bool:
    return isinstance(exc, NonFiniteError) or bool(_NON_FINITE_MESSAGE.search(str(exc)))


class _Deadline(BaseCallback):
    """collect_rollouts' callback: stops the rollout at the env step where the deadline passes."""

    deadline: float | None = None

    def _on_step(self) -> bool:
        return self.deadline is None or time.time() < self.deadline


class SB3Trainer:
    """The loop's adapter over one SB3 run (one seed): envs, model, and the algorithm's learn() in chunks."""

    state_has_values = False  # a checkpoint leaves the values to the config (a snapshot adds them)

    def __init__(self, setup: PPOSetup, env: str, *, seed: int, eval_episodes: int, device: str,
                 reward_weights: Mapping | None, tb_dir: str | None = None, hparams: Mapping | None = None,
                 save_path: str | None = None):
        raw_env, eval_env, self.true_metric = make_env_pair(env, num_envs=setup.num_envs, eval_episodes=eval_episodes,
                                                            seed=seed, device=device, reward_weights=reward_weights)
        train_env = raw_env
        if setup.normalize:
            train_env = VecNormalize(raw_env, gamma=float(setup.ppo_kwargs.get("gamma", 0.99)))
            eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
            eval_env.obs_rms = train_env.obs_rms  # shared, never updated by eval (training=False)
        self.raw_env, self.train_env, self.eval_env = raw_env, train_env, eval_env
        self.model = _build_model(setup, train_env, seed=seed, device=device, tb_dir=tb_dir)
        self.seeds, self.rollout = [int(seed)], self.model.n_steps * train_env.num_envs
        self.hparams, self.save_path = dict(hparams or {}), save_path
        self._failed: dict[int, tuple[int, str]] = {}
        self._callback: BaseCallback | None = None
        self._deadline = _Deadline(verbose=0)
        self._iteration, self._unflushed = 0, False

    @property
    def steps(self) -> int:
        return int(self.model.num_timesteps)

    def begin(self, total: int, resumed: bool) -> None:
        """``learn()``'s setup: the logger (TensorBoard), a fresh run's first observations, the step target."""
        m = self.model
        _, self._callback = m._setup_learn(max(total - m.num_timesteps, 0) if resumed else total, self._deadline,
                                           reset_num_timesteps=not resumed, tb_log_name=f"seed_{self.seeds[0]}")
        if self.hparams:  # metric_dict names the scalar TensorBoard pairs with the HParams table
            m.logger.record("hparams", HParam(hparam_values(self.hparams), {"eval/true_metric": 0.0}),
                            exclude=("stdout", "log", "json", "csv"))

    def chunk(self, total: int, deadline: float | None) -> bool:
        """One iteration of ``learn()``'s loop; a diverged update fails the seed (not the job)."""
        m = self.model
        self._deadline.deadline = deadline
        env, callback = m.env, self._callback
        assert env is not None and callback is not None  # built with an env; begin() (always first) set the callback
        try:
            if not m.collect_rollouts(env, callback, m.rollout_buffer, n_rollout_steps=m.n_steps):
                return False
            self._iteration += 1
            m._update_current_progress_remaining(m.num_timesteps, m._total_timesteps)
            m.dump_logs(self._iteration)
            self._unflushed = False
            m.train()
        except (NonFiniteError, ValueError, RuntimeError, FloatingPointError) as exc:
            if not _is_non_finite(exc):
                raise
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._failed[0] = (self.steps, f"training diverged (nan/inf): {first_line[:300]}")
        return True

    def evaluate(self, deadline: float | None) -> list[EvalStats] | None:
        stats = evaluate(self.model, self.eval_env, seed=self.seeds[0] + EVAL_SEED_OFFSET, steps=self.steps,
                         true_metric=self.true_metric, deadline=deadline)
        return None if stats is None else [stats]

    def log_evals(self, stats: Sequence[EvalStats]) -> None:
        """To SB3's logger; written at the next dump (after the next rollout, or at the end)."""
        logger, e = self.model.logger, stats[0]
        logger.record("eval/true_metric", e.true_metric)
        logger.record("eval/shaped_return", e.shaped_return)
        logger.record("eval/reference_return", e.reference_return)
        if e.success_rate is not None:
            logger.record("eval/success_rate", e.success_rate)
        for name, value in e.terms.items():
            logger.record(f"eval/terms/{name}", value)
        self._unflushed = True

    def failed(self) -> dict[int, tuple[int, str]]:
        return self._failed

    def state(self, loop_part: Mapping[str, Any]) -> dict:
        return sb3_state.checkpoint_state(self.model, self.raw_env, self.train_env, loop_part)

    def load(self, state: Mapping, total: int) -> dict:
        part = sb3_state.restore(self.model, self.raw_env, self.train_env, state, seed=self.seeds[0], total=total)
        if self._callback is not None and self.model._last_obs is None:  # mid-run (a rollback): gymnasium envs restart
            # SB3's own types are narrower than its values here (its _setup_learn ignores the same assignment)
            self.model._last_obs = self.train_env.reset()  # type: ignore[assignment]
            self.model._last_episode_starts = [True] * self.train_env.num_envs  # type: ignore[assignment]
        return part

    def set_values(self, values: Mapping[str, float], weights: Mapping[str, float] | None) -> None:
        sb3_state.set_values(self.model, self.raw_env, self.train_env, values, weights)

    def values(self) -> dict[str, float]:
        m = self.model
        return {**sb3_state.current_values(m, self.raw_env),
                **{k: float(getattr(m, k)) for k in ("gamma", "gae_lambda", "vf_coef", "max_grad_norm")}}

    def last_kl(self) -> float | None:
        return (getattr(self.model, "last_update", None) or {}).get("approx_kl")

    def lr_scale(self) -> float:
        """A linear schedule's remaining fraction at the last update (``LinearSchedule(lr, 0, 1)``), else 1."""
        linear = isinstance(self.model.learning_rate, LinearSchedule)  # a tuner's value sets a float there
        return float(self.model._current_progress_remaining) if linear else 1.0

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.policy.parameters())

    def finish(self, ended: loop.Ended) -> None:
        """The final evaluation's TensorBoard row, the model file, the logger closed."""
        m = self.model
        if ended.stop is None and self._unflushed:
            m.logger.dump(m.num_timesteps)
        if self.save_path and not self._failed:
            _save(m, self.save_path)

    def close(self) -> None:
        if getattr(self.model, "_logger", None) is not None:
            self.model.logger.close()  # flushes TensorBoard
        self.train_env.close()
        self.eval_env.close()


def _save(model: BatchedPPO, save_path: str) -> None:
    """Model .zip, plus VecNormalize statistics beside it (needed to replay the policy)."""
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    model.save(save_path)
    env = model.get_env()
    if isinstance(env, VecNormalize):
        env.save(save_path.removesuffix(".zip") + "_vecnormalize.pkl")


def build_run(params: Mapping | PPOSetup, env: str, *, seed: int, eval_episodes: int = 32, device: str = "cpu",
              reward_weights: Mapping | None = None, tb_dir: str | None = None, save_path: str | None = None
              ) -> SB3Trainer:
    """A built (untrained) SB3 run of ``params`` on ``env``: the loop's trainer."""
    setup = to_setup(params)
    return SB3Trainer(setup, env, seed=seed, eval_episodes=eval_episodes, device=device, reward_weights=reward_weights,
                      tb_dir=tb_dir, hparams=hparams(params, reward_weights) if tb_dir else None, save_path=save_path)


def train_seed(
    params: Mapping,
    *,
    env: str,
    seed: int,
    total_steps: int | None = None,
    reward_weights: Mapping | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 32,
    deadline: float | None = None,
    device: str = "auto",
    tb_dir: str | None = None,
    save_path: str | None = None,
    channel: Any = None,
    checkpoint_path: str | None = None,
    checkpoint_every: int | None = None,
    schedule: Sequence[Mapping] | None = None,
    tune: Mapping | None = None,
    until_steps: int | None = None,
) -> SeedResult:
    """Train PPO for one config and seed on ``env`` (batched task or gymnasium id); never raises
    for a diverging config (state 'failed'). Evaluates every ``eval_every`` steps on eval envs
    seeded ``seed + EVAL_SEED_OFFSET``; stops at ``total_steps``, at ``deadline`` (time.time()),
    or when ``channel.stop_requested()`` (its reason, an ``automl.core.stop.Stop``, decides the state).

    With ``checkpoint_path``: a checkpoint of this job found there is resumed (its steps in
    ``resumed_from``; an unreadable one or one of another job is ignored and noted in
    ``checkpoint_note``), and a new one replaces it every ``checkpoint_every`` env steps (default
    every ``eval_every``), at a rollout boundary after that boundary's evaluation. The file is
    left in place at the end: deleting it (``automl.train.checkpoint.remove``) is the caller's job.
    ``schedule``: a PBT member's values and weights by step, replayed (``automl.train.loop.Schedule``).
    ``tune``: online tuning of this run, {tuner, log_dir, control, plan, actuators} (``automl.train.tuning``).
    ``until_steps``: pause there, a prefix of the ``total_steps`` run (schedules and the checkpoint's header
    are the whole run's), with a checkpoint at the pause: a later call with a larger ``until_steps`` (or
    none) continues from it and trains only the extra steps (a fidelity ladder's promotion).
    """
    threads = th.get_num_threads()
    # A 64x64 MLP gains nothing from intra-op threads and loses ~10x when other processes
    # compete for the cores (spin-waiting); parallelism comes from worker processes instead.
    # One thread also keeps CPU results bit-for-bit reproducible.
    th.set_num_threads(1)
    try:
        return _train_seed(params, env=env, seed=seed, total_steps=total_steps, reward_weights=reward_weights,
                           eval_every=eval_every, eval_episodes=eval_episodes, deadline=deadline, device=device,
                           tb_dir=tb_dir, save_path=save_path, channel=channel, checkpoint_path=checkpoint_path,
                           checkpoint_every=checkpoint_every, schedule=list(schedule or []), tune=tune,
                           until_steps=until_steps)
    finally:
        th.set_num_threads(threads)


def _train_seed(params: Mapping, *, env: str, seed: int, total_steps: int | None, reward_weights: Mapping | None,
                eval_every: int | None, eval_episodes: int, deadline: float | None, device: str,
                tb_dir: str | None, save_path: str | None, channel: Any, checkpoint_path: str | None,
                checkpoint_every: int | None, schedule: list, tune: Mapping | None,
                until_steps: int | None = None) -> SeedResult:
    """train_seed's body (see there), run with one torch thread."""
    setup = to_setup(params)
    total = int(total_steps if total_steps is not None else (setup.n_timesteps or 0))
    if total <= 0:
        raise ValueError("train_seed: total_steps: not given and the config has no n_timesteps (allowed: > 0)")
    from envs import resolve_device  # the one device normaliser ('auto' -> cuda if present, else cpu)

    device = str(resolve_device(device))
    rollout = int(setup.ppo_kwargs.get("n_steps", 2048)) * int(setup.num_envs)
    every = max(int(eval_every or total // 10), rollout)
    header = checkpoint.job_header(setup, env=env, seed=seed, total=total, reward_weights=reward_weights,
                                   eval_every=eval_every, eval_episodes=eval_episodes, device=device)
    ckpt = loop.checkpointing(checkpoint_path, header, schedule=schedule, every=every,
                              checkpoint_every=checkpoint_every, rollout=rollout)

    def build() -> SB3Trainer:
        return build_run(params, env, seed=seed, eval_episodes=eval_episodes, device=device,
                         reward_weights=reward_weights, tb_dir=tb_dir, save_path=save_path)

    trainer, ended = loop.train(build, loop.Plan(total, every, deadline, until=until_steps), channel=channel, ckpt=ckpt,
                                schedule=schedule, tune=tune)
    extra = {"params": trainer.n_params()} if trainer is not None else {}
    return loop.results(trainer, ended, [seed], **extra)[0]


def run_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_seed(**kwargs, channel=channel).to_dict()`` (picklable, top level)."""
    return train_seed(channel=channel, **kwargs).to_dict()

"""Train one (config, seed) with SB3 PPO and return a plain SeedResult.

``train_seed`` is a pure function of its arguments (PureJaxRL style): it reads no globals and
no state files, so the executor can run it in any process, retry it, or ship it elsewhere.
This module (with ``ppo_fast`` and ``evaluation``) is the only place that imports SB3.

A seed's result is ``seed_value``: the mean true metric of its last ``LAST_EVALS`` evaluations.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from automl.train import checkpoint
from automl.train.sb3_state import checkpoint_header as _checkpoint_header, checkpoint_state as _checkpoint_state
from automl.train.sb3_state import restore as _restore
from automl.core.config import PPOSetup
from automl.train.evaluation import EvalStats, TrialCallback, evaluate
from automl.train.ppo_fast import BatchedPPO, NonFiniteError

LAST_EVALS = 3
EVAL_SEED_OFFSET = 10_000  # eval envs never share initial states with the training envs
STATES = ("complete", "pruned", "stopped_at_deadline", "failed")
# Words in torch/SB3 error messages that mean "the numbers blew up", not "the code is wrong"
# (e.g. "...found invalid values", "probability tensor contains either `inf`, `nan`...").
_NON_FINITE_MESSAGE = re.compile(r"\b(nan|inf)\b|invalid values", re.IGNORECASE)


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
    stop_reason: str  # step_budget | deadline | <channel's reason> | non_finite | error
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

    def to_dict(self) -> dict:
        """A plain dict (lists, floats, ints, strings) for YAML / JSON / the executor."""
        return asdict(self)


def _to_setup(params: Mapping | PPOSetup) -> PPOSetup:
    """Search params (either naming) -> PPOSetup, only through automl.core.config.to_ppo_setup."""
    if isinstance(params, PPOSetup):
        return params
    from automl.core.config import to_ppo_setup

    return to_ppo_setup(params)


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


def _hparams(params: Mapping | PPOSetup, reward_weights: Mapping | None) -> dict:
    base = dict(params) if not isinstance(params, PPOSetup) else {**params.ppo_kwargs, "num_envs": params.num_envs}
    base.pop("policy_kwargs", None)
    return {**base, **{f"reward.{k}": v for k, v in (reward_weights or {}).items()}}


def _is_non_finite(exc: Exception) -> bool:
    return isinstance(exc, NonFiniteError) or bool(_NON_FINITE_MESSAGE.search(str(exc)))


def _learn(model: BatchedPPO, callback: TrialCallback, total_steps: int, resume: bool = False,
           extra: Any = None, after: Any = None) -> tuple[str, str, str | None]:
    """Run SB3's learn loop (a resumed model: on to ``total_steps`` in all); return (state, stop_reason, failure detail).
    ``extra``/``after``: SB3 callbacks run before (a replayed schedule) / after (an online tuner) ``callback``."""
    chain = [c for c in (extra, callback, after) if c is not None]
    callbacks = CallbackList(chain) if len(chain) > 1 else callback
    try:
        if resume:
            model.learn(max(total_steps - model.num_timesteps, 0), callback=callbacks, tb_log_name=f"seed_{model.seed}",
                        reset_num_timesteps=False)
        else:
            model.learn(total_steps, callback=callbacks, tb_log_name=f"seed_{model.seed}")
    except (NonFiniteError, ValueError, RuntimeError, FloatingPointError) as exc:
        if not _is_non_finite(exc):
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return "failed", "non_finite", f"training diverged (nan/inf): {first_line[:300]}"
    if callback.state is not None:
        return callback.state, callback.stop_reason or callback.state, None
    if not callback.evals or callback.evals[-1].steps < model.num_timesteps:
        callback.run_evaluation()  # the final policy is always evaluated, unless the deadline hits
        model.logger.dump(model.num_timesteps)
    if callback.state is not None:
        return callback.state, callback.stop_reason or callback.state, None
    return "complete", "step_budget", None


def _result(seed: int, state: str, stop_reason: str, evals: list[EvalStats], **timing: Any) -> SeedResult:
    """Aggregate evaluations into a SeedResult (a failed run has no value: the driver scores it worst)."""
    usable = [] if state == "failed" else evals
    tail = usable[-LAST_EVALS:]
    successes = [e.success_rate for e in tail if e.success_rate is not None]
    term_names = sorted({name for e in tail for name in e.terms})
    return SeedResult(
        seed=int(seed),
        state=state,
        stop_reason=stop_reason,
        episode_reward_mean=seed_value([e.true_metric for e in usable]),
        success_rate=float(np.mean(successes)) if successes else None,
        shaped_return=seed_value([e.shaped_return for e in usable]),
        reference_return=seed_value([e.reference_return for e in usable]),
        terms={n: seed_value([e.terms[n] for e in tail if n in e.terms]) for n in term_names},
        evals=[[int(e.steps), float(e.true_metric)] for e in evals],
        **timing,
    )


def _save(model: BatchedPPO, save_path: str) -> None:
    """Model .zip, plus VecNormalize statistics beside it (needed to replay the policy)."""
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    model.save(save_path)
    env = model.get_env()
    if isinstance(env, VecNormalize):
        env.save(save_path.removesuffix(".zip") + "_vecnormalize.pkl")


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
) -> SeedResult:
    """Train PPO for one config and seed on ``env`` (batched task or gymnasium id); never raises
    for a diverging config (state 'failed'). Evaluates every ``eval_every`` steps on eval envs
    seeded ``seed + EVAL_SEED_OFFSET``; stops at ``total_steps``, at ``deadline`` (time.time()),
    or when ``channel.stop_requested()``.

    With ``checkpoint_path``: a checkpoint of this job found there is resumed (its steps in
    ``resumed_from``; an unreadable one or one of another job is ignored and noted in
    ``checkpoint_note``), and a new one replaces it every ``checkpoint_every`` env steps (default
    every ``eval_every``), at a rollout boundary after that boundary's evaluation. The file is
    left in place at the end: deleting it (``automl.train.checkpoint.remove``) is the caller's job.
    ``schedule``: a PBT member's values and weights by step, replayed (``automl.train.sb3_pbt``).
    ``tune``: online tuning of this run, {tuner, log_dir, control} (``automl.train.sb3_tune.TuneCallback``).
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
                           checkpoint_every=checkpoint_every, schedule=list(schedule or []), tune=tune)
    finally:
        th.set_num_threads(threads)


def _build_run(setup: PPOSetup, env: str, *, seed: int, eval_episodes: int, device: str, reward_weights: Mapping | None,
               tb_dir: str | None) -> tuple[VecEnv, VecEnv, VecEnv, str, BatchedPPO]:
    """(raw train VecEnv, train VecEnv as PPO sees it, eval VecEnv, true metric, model)."""
    raw_env, eval_env, true_metric = make_env_pair(
        env, num_envs=setup.num_envs, eval_episodes=eval_episodes, seed=seed, device=device, reward_weights=reward_weights
    )
    train_env = raw_env
    if setup.normalize:
        train_env = VecNormalize(raw_env, gamma=float(setup.ppo_kwargs.get("gamma", 0.99)))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = train_env.obs_rms  # shared, never updated by eval (training=False)
    return raw_env, train_env, eval_env, true_metric, _build_model(setup, train_env, seed=seed, device=device, tb_dir=tb_dir)


def _train_seed(params: Mapping, *, env: str, seed: int, total_steps: int | None, reward_weights: Mapping | None,
                eval_every: int | None, eval_episodes: int, deadline: float | None, device: str,
                tb_dir: str | None, save_path: str | None, channel: Any, checkpoint_path: str | None,
                checkpoint_every: int | None, schedule: list, tune: Mapping | None) -> SeedResult:
    """train_seed's body (see there), run with one torch thread."""
    start = time.time()
    setup = _to_setup(params)
    total = int(total_steps if total_steps is not None else (setup.n_timesteps or 0))
    if total <= 0:
        raise ValueError("train_seed: total_steps: not given and the config has no n_timesteps (allowed: > 0)")
    if deadline is not None and time.time() >= deadline:
        return _result(seed, "stopped_at_deadline", "deadline", [], wall_s=time.time() - start)
    from envs import resolve_device  # the one device normaliser ('auto' -> cuda if present, else cpu)

    device = str(resolve_device(device))
    header, saved, note = {}, None, None
    if checkpoint_path:
        header = _checkpoint_header(setup, env=env, seed=seed, total=total, reward_weights=reward_weights,
                                    eval_every=eval_every, eval_episodes=eval_episodes, device=device)
        if schedule:
            header["schedule"] = schedule
        saved, note = checkpoint.load_matching(checkpoint_path, header)
    build = dict(seed=seed, eval_episodes=eval_episodes, device=device, reward_weights=reward_weights, tb_dir=tb_dir)
    raw_env, train_env, eval_env, true_metric, model = _build_run(setup, env, **build)
    rollout = model.n_steps * train_env.num_envs
    every = max(int(eval_every or total // 10), rollout)
    prior = {"train_s": 0.0, "eval_s": 0.0, "wall_s": 0.0}  # time spent before the checkpoint resumed from
    clock = {"learn_start": time.time()}

    def evaluator(steps: int, until: float | None) -> EvalStats | None:
        # model and eval_env are looked up at call time: a failed restore rebuilds them
        return evaluate(model, eval_env, seed=seed + EVAL_SEED_OFFSET, steps=steps, true_metric=true_metric, deadline=until)

    def save_checkpoint() -> None:
        nonlocal note
        now = time.time()
        spent = {"train_s": prior["train_s"] + (now - clock["learn_start"]) - (callback.eval_s - prior["eval_s"]),
                 "wall_s": prior["wall_s"] + (now - start)}
        try:
            checkpoint.save(checkpoint_path, {**header, "steps": int(model.num_timesteps)},
                            _checkpoint_state(model, raw_env, train_env, callback, spent))
        except Exception as exc:  # noqa: BLE001 - a full disk must not end the run; it only loses resumability
            if "save failed" not in (note or ""):  # the first failure says it; later ones would repeat it
                failed = f"checkpoint save failed at {model.num_timesteps} steps ({type(exc).__name__}: {str(exc)[:200]})"
                note = f"{note}; {failed}" if note else failed

    def make_callback() -> TrialCallback:
        return TrialCallback(
            evaluator,
            eval_every=every,
            deadline=deadline,
            channel=channel,
            hparams=_hparams(params, reward_weights) if tb_dir else None,
            checkpoint=save_checkpoint if checkpoint_path else None,
            checkpoint_every=max(int(checkpoint_every or every), rollout) if checkpoint_path else None,
        )

    callback = make_callback()
    resumed_from = None
    if saved is not None:
        try:
            _restore(model, raw_env, train_env, callback, saved["state"], seed=seed, total=total)
            resumed_from = int(model.num_timesteps)
            prior.update(train_s=float(saved["state"]["train_s"]), eval_s=callback.eval_s,
                         wall_s=float(saved["state"]["wall_s"]))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, start over rather than fail
            note = f"checkpoint could not be restored ({type(exc).__name__}: {str(exc)[:200]}); started from scratch"
            train_env.close()
            eval_env.close()
            raw_env, train_env, eval_env, true_metric, model = _build_run(setup, env, **build)
            callback = make_callback()
    clock["learn_start"] = time.time()
    extra = None
    if schedule:
        from automl.train.sb3_pbt import ScheduleCallback  # (sb3_pbt builds on this module)

        extra = ScheduleCallback(schedule, raw_env, train_env)
    after = None
    if tune:
        from automl.train.sb3_tune import TuneCallback

        after = TuneCallback(tune["tuner"], callback, raw_env, train_env, seed=seed, total=total,
                             log_dir=tune.get("log_dir"), control=tune.get("control"), plan=tune.get("plan"),
                             actuators=tune.get("actuators"))
    try:
        state, stop_reason, detail = _learn(model, callback, total, resume=resumed_from is not None, extra=extra,
                                            after=after)
        if save_path and state != "failed":
            _save(model, save_path)
    finally:
        if getattr(model, "_logger", None) is not None:
            model.logger.close()  # flushes TensorBoard
        train_env.close()
        eval_env.close()
    learn_s = time.time() - clock["learn_start"]
    return _result(
        seed, state, stop_reason, callback.evals, steps=int(model.num_timesteps),
        wall_s=prior["wall_s"] + time.time() - start, train_s=prior["train_s"] + learn_s - (callback.eval_s - prior["eval_s"]),
        eval_s=callback.eval_s, reason=detail, resumed_from=resumed_from, checkpoint_note=note,
        params=sum(p.numel() for p in model.policy.parameters()),
    )


def run_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_seed(**kwargs, channel=channel).to_dict()`` (picklable, top level)."""
    return train_seed(channel=channel, **kwargs).to_dict()

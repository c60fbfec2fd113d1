"""What an SB3 seed job needs to continue where it was: the checkpoint's header and state.

Training's side of checkpoints (automl.train.checkpoint stores the file atomically): the policy,
optimizer, VecNormalize statistics, step count and schedule position, the callback's evaluations,
RNG states and, on the batched tasks, the env's own tensors, so a resumed run continues bit for bit.
Part of the training layer (may import SB3).
"""
from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Mapping

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from automl.core.config import PPOSetup
from automl.train.evaluation import TrialCallback
from automl.train.ppo_fast import BatchedPPO


def checkpoint_header(setup: PPOSetup, *, env: str, seed: int, total: int, reward_weights: Mapping | None,
                       eval_every: int | None, eval_episodes: int, device: str) -> dict:
    """What a checkpoint must match to be resumed: the job's seed, steps, env, device and config."""
    config = {"ppo_kwargs": setup.ppo_kwargs, "num_envs": setup.num_envs, "normalize": setup.normalize,
              "schedule": setup.learning_rate_schedule, "reward_weights": dict(reward_weights or {}),
              "eval_every": eval_every, "eval_episodes": eval_episodes}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"seed": int(seed), "total_steps": int(total), "env": str(env), "device": th.device(device).type, "config": digest}


def _rms_state(rms: Any) -> dict:
    if isinstance(rms, dict):
        return {key: _rms_state(value) for key, value in rms.items()}
    return {"mean": th.from_numpy(np.array(rms.mean, dtype=np.float64)),
            "var": th.from_numpy(np.array(rms.var, dtype=np.float64)), "count": float(rms.count)}


def load_rms(rms: Any, state: Mapping) -> None:
    """In place: the eval env shares the train env's obs_rms object."""
    if isinstance(rms, dict):
        for key, value in rms.items():
            load_rms(value, state[key])
        return
    if tuple(state["mean"].shape) != tuple(np.shape(rms.mean)):
        raise ValueError(f"normalization statistics: shape {tuple(state['mean'].shape)} != {np.shape(rms.mean)}")
    rms.mean, rms.var, rms.count = state["mean"].numpy().copy(), state["var"].numpy().copy(), float(state["count"])


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    out = {"torch": th.get_rng_state(), "python": [version, list(internal), gauss],
           "numpy": {"kind": kind, "keys": th.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if th.cuda.is_available() and th.cuda.is_initialized():
        out["cuda"] = th.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: Mapping) -> None:
    th.set_rng_state(state["torch"])
    if "cuda" in state and th.cuda.is_available():
        th.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def batched_env(raw_env: VecEnv) -> Any:
    """The batched torch env behind a TorchVecEnv (None for gymnasium ids)."""
    inner = getattr(raw_env, "env", None)
    return inner if hasattr(inner, "state_dict") and hasattr(inner, "load_state_dict") else None


def checkpoint_state(model: BatchedPPO, raw_env: VecEnv, train_env: VecEnv, callback: TrialCallback,
                      spent: Mapping[str, float]) -> dict:
    """Everything to continue at this rollout boundary, as plain values and tensors (no rollout data)."""
    batched = batched_env(raw_env)
    state = {
        "steps": int(model.num_timesteps), "n_updates": int(model._n_updates),
        "policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(),
        "callback": callback.state_dict(), "rng": _rng_state(), **{k: float(v) for k, v in spent.items()},
        # batched envs: their exact state, so the run continues bit for bit; gymnasium envs are reset on resume
        "env": batched.state_dict() if batched is not None else None,
        "last_obs": th.from_numpy(np.array(model._last_obs)) if batched is not None else None,
        "last_episode_starts": th.from_numpy(np.array(model._last_episode_starts)) if batched is not None else None,
        "normalize": None,
    }
    if isinstance(train_env, VecNormalize):
        state["normalize"] = {"obs_rms": _rms_state(train_env.obs_rms), "ret_rms": _rms_state(train_env.ret_rms),
                              "returns": th.from_numpy(np.array(train_env.returns, dtype=np.float64))}
    return state


def restore(model: BatchedPPO, raw_env: VecEnv, train_env: VecEnv, callback: TrialCallback, state: Mapping, *,
             seed: int, total: int) -> None:
    """Put a freshly built model, env and callback where the checkpoint left them (RNG states last)."""
    steps = int(state["steps"])
    if not 0 < steps < total:
        raise ValueError(f"checkpoint at {steps} steps (allowed: 0 < steps < {total})")
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps, model._n_updates = steps, int(state["n_updates"])
    # learn(total - steps, reset_num_timesteps=False) sets _total_timesteps = total: schedules continue
    model._current_progress_remaining = 1.0 - steps / total
    if isinstance(train_env, VecNormalize):
        norm = state["normalize"]
        load_rms(train_env.obs_rms, norm["obs_rms"])
        load_rms(train_env.ret_rms, norm["ret_rms"])
        train_env.returns = norm["returns"].numpy().copy()
    batched = batched_env(raw_env)
    if batched is not None and state.get("env") is not None:
        batched.load_state_dict(state["env"])
        model._last_obs = state["last_obs"].numpy().copy()
        model._last_episode_starts = state["last_episode_starts"].numpy().copy()
    else:  # gymnasium envs: fresh episodes, seeded apart from the ones the run started with
        train_env.seed(int(seed) + steps)
        model._last_obs = None  # learn() resets the env
    callback.load_state_dict(state["callback"], steps)
    _set_rng_state(state["rng"])

"""An SB3 run's full state: the checkpoint's header, the state itself, and the values PBT and the tuner set.

Training's side of checkpoints (automl.train.checkpoint stores the file atomically): the policy,
optimizer, VecNormalize statistics, step count and schedule position, the loop's evaluations (under
"callback", the file's spelling since SB3 callbacks ran the loop), RNG states and, on the batched
tasks, the env's own tensors, so a resumed run continues bit for bit. ``set_values`` puts a PBT
member's or the tuner's values on a built (or restored) run; ``current_values`` reads them back.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Mapping, cast

import numpy as np
import torch as th
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from automl.train.evaluation import EvalStats
from automl.train.sb3_ppo import BatchedPPO


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
    # the legacy (default) form: a tuple for the global MT19937 state; the stub also allows a dict
    kind, keys, pos, has_gauss, cached = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
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


def checkpoint_state(model: BatchedPPO, raw_env: VecEnv, train_env: VecEnv, loop: Mapping[str, Any]) -> dict:
    """Everything to continue at this rollout boundary, as plain values and tensors (no rollout data);
    ``loop``: the seed-job loop's part (evaluations of the one seed, next evaluation, times)."""
    batched = batched_env(raw_env)
    state = {
        "steps": int(model.num_timesteps), "n_updates": int(model._n_updates),
        "policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(),
        "callback": {"evals": [dataclasses.asdict(e) for e in loop["evals"][0]], "next_eval": int(loop["next_eval"]),
                     "eval_s": float(loop["eval_s"])},
        "rng": _rng_state(), **{k: float(loop[k]) for k in ("train_s", "wall_s") if k in loop},
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


def restore(model: BatchedPPO, raw_env: VecEnv, train_env: VecEnv, state: Mapping, *, seed: int, total: int) -> dict:
    """Put a freshly built model and env where the checkpoint left them (RNG states last); returns the
    loop's part ({evals: [[EvalStats]], next_eval, eval_s, train_s, wall_s})."""
    steps = int(state["steps"])
    if not 0 < steps <= total:
        raise ValueError(f"checkpoint at {steps} steps (allowed: 0 < steps <= {total})")
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
    _set_rng_state(state["rng"])
    cb = state["callback"]
    return {"evals": [[EvalStats(**e) for e in cb["evals"]]], "next_eval": int(cb["next_eval"]),
            "eval_s": float(cb["eval_s"]), "train_s": float(state.get("train_s", 0.0)),
            "wall_s": float(state.get("wall_s", 0.0))}


def set_values(model: Any, raw_env: Any, train_env: Any, values: Mapping[str, float],
               weights: Mapping[str, float] | None) -> None:
    """A PBT member's (or the tuner's) MEMBER_PARAMS values and reward weights on a built (or restored) run.
    Set after every restore: loading a PPO or its optimizer brings the saved values back (Ray Tune #62173)."""
    v = dict(values)
    if "learning_rate" in v:
        model.learning_rate = float(v["learning_rate"])
        model._setup_lr_schedule()
        for group in model.policy.optimizer.param_groups:
            group["lr"] = float(v["learning_rate"])
    if "clip_range" in v:
        model.clip_range = FloatSchedule(float(v["clip_range"]))
    for name in ("gamma", "gae_lambda"):
        if name in v:
            setattr(model, name, float(v[name]))
            setattr(model.rollout_buffer, name, float(v[name]))
    for name in ("ent_coef", "vf_coef", "max_grad_norm"):
        if name in v:
            setattr(model, name, float(v[name]))
    set_optimizer(model.policy.optimizer, v)
    if isinstance(train_env, VecNormalize) and "gamma" in v:
        train_env.gamma = float(v["gamma"])
    batched = batched_env(raw_env)
    if weights and batched is not None:
        batched.set_reward_weights(weights)  # a restored env state brought the old weights back
    elif weights:
        for e in getattr(raw_env, "envs", []):  # gymnasium ids: the RewardTermsWrapper of each env
            if hasattr(e, "set_weights"):
                e.set_weights(weights)


OPTIMIZER_PARAMS = ("weight_decay", "adam_beta1", "adam_beta2", "adam_eps")  # PPO's Adam, as the tuner names them


def set_optimizer(optimizer: Any, values: Mapping[str, float]) -> None:
    """Adam's weight decay, betas and eps (``OPTIMIZER_PARAMS``) on every parameter group; the optimizer's
    state_dict holds them, so a snapshot's restore puts the old ones back."""
    for group in optimizer.param_groups:
        if "weight_decay" in values:
            group["weight_decay"] = float(values["weight_decay"])
        if "adam_beta1" in values or "adam_beta2" in values:
            b1, b2 = group["betas"]
            group["betas"] = (float(values.get("adam_beta1", b1)), float(values.get("adam_beta2", b2)))
        if "adam_eps" in values:
            group["eps"] = float(values["adam_eps"])


def optimizer_values(optimizer: Any) -> dict[str, float]:
    """``OPTIMIZER_PARAMS`` now (the first parameter group's)."""
    g = optimizer.param_groups[0]
    return {"weight_decay": float(g["weight_decay"]), "adam_beta1": float(g["betas"][0]),
            "adam_beta2": float(g["betas"][1]), "adam_eps": float(g["eps"])}


def current_values(model: Any, raw_env: Any) -> dict[str, float]:
    """The tuner's actuators' values now: learning rate, entropy coefficient, clip range, value-loss weight, Adam's
    weight decay, betas and eps, ``reward.<term>``."""
    out = {"learning_rate": float(model.policy.optimizer.param_groups[0]["lr"]), "ent_coef": float(model.ent_coef),
           "clip_range": float(model.clip_range(model._current_progress_remaining)),
           "vf_coef": float(model.vf_coef), **optimizer_values(model.policy.optimizer)}
    batched = batched_env(raw_env)
    weights = batched.reward_weights if batched is not None else \
        next((e.reward_weights for e in getattr(raw_env, "envs", []) if hasattr(e, "reward_weights")), {})
    out.update({f"reward.{k}": float(v) for k, v in weights.items()})
    return out


def take(model: Any, train_env: Any, state: Mapping) -> None:
    """The learned state of another member's checkpoint: policy, optimizer, normalisation statistics (a PBT copy)."""
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    if isinstance(train_env, VecNormalize) and state.get("normalize"):
        load_rms(train_env.obs_rms, state["normalize"]["obs_rms"])
        load_rms(train_env.ret_rms, state["normalize"]["ret_rms"])

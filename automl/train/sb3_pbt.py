"""Population-based training on the SB3 trainer: one member per job, copies through checkpoint files.

SB3 trains one model per process, so each member is its own group (``automl.run.pbt`` submits one job
per member). ``train_member`` has ``automl.train.torch_pbt.train_segment``'s arguments and result: it
restores the member's checkpoint of the last ready point (``automl.train.sb3_state``), takes a better
member's policy, optimizer and VecNormalize statistics from that member's file of the same ready
point when told to copy, then sets the member's values, trains to the next ready point, evaluates and
saves. Values are set **after** every restore: loading a saved PPO or its optimizer state brings back
the saved learning rate and coefficients, which is how perturbed values get silently undone (Ray Tune
#62173). ``ScheduleCallback`` replays a member's schedule in a plain ``train_seed`` (the test phase).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecNormalize

from automl.train import checkpoint, sb3_state
from automl.train.evaluation import TrialCallback, evaluate
from automl.train.torch_pbt import group_path, member_values
from automl.train.training import EVAL_SEED_OFFSET, _build_run, _learn, _to_setup


def set_values(model: Any, raw_env: Any, train_env: Any, values: Mapping[str, float],
               weights: Mapping[str, float] | None) -> None:
    """A member's MEMBER_PARAMS values and reward weights on a built (or restored) SB3 run."""
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
    if isinstance(train_env, VecNormalize) and "gamma" in v:
        train_env.gamma = float(v["gamma"])
    batched = sb3_state.batched_env(raw_env)
    if weights and batched is not None:
        batched.set_reward_weights(weights)  # a restored env state brought the old weights back
    elif weights:
        for e in getattr(raw_env, "envs", []):  # gymnasium ids: the RewardTermsWrapper of each env
            if hasattr(e, "set_weights"):
                e.set_weights(weights)


def _take(model: Any, train_env: Any, state: Mapping) -> None:
    """The learned state of another member's checkpoint: policy, optimizer, normalisation statistics."""
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    if isinstance(train_env, VecNormalize) and state.get("normalize"):
        sb3_state.load_rms(train_env.obs_rms, state["normalize"]["obs_rms"])
        sb3_state.load_rms(train_env.ret_rms, state["normalize"]["ret_rms"])


def train_member(member_params: Sequence[Mapping], *, env: str, seeds: Sequence[int], ids: Sequence[int],
                 weights: Sequence[Mapping], copies: Mapping[int, tuple[int, int]] | None = None, state_dir: str,
                 group: int, ready: int, to_step: int, total_steps: int, eval_episodes: int = 32,
                 deadline: float | None = None, device: str = "auto") -> dict:
    """One member (``ids``/``seeds`` of length 1) from ready point ``ready`` to ``to_step``; the result of
    ``train_segment``."""
    from envs import resolve_device

    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params, seed, member, w = member_params[0], int(seeds[0]), int(ids[0]), dict(weights[0] or {})
        setup = _to_setup(params)
        device = str(resolve_device(device))
        raw_env, train_env, eval_env, true_metric, model = _build_run(
            setup, env, seed=seed, eval_episodes=eval_episodes, device=device, reward_weights=w or None, tb_dir=None)
        own = checkpoint.load(group_path(state_dir, ready, group)) if ready > 0 else None
        every = max(1, to_step - (int(own["header"]["steps"]) if own else 0))
        callback = TrialCallback(lambda steps, until: evaluate(model, eval_env, seed=seed + EVAL_SEED_OFFSET, steps=steps,
                                                               true_metric=true_metric, deadline=until),
                                 eval_every=every, deadline=deadline)
        t_copy = time.time()
        if own is not None:
            sb3_state.restore(model, raw_env, train_env, callback, own["state"], seed=seed, total=total_steps + 1)
            callback._next_eval = int(model.num_timesteps) + every
            copy = (copies or {}).get(member)
            if copy is not None:
                _take(model, train_env, checkpoint.load(group_path(state_dir, ready, copy[1]))["state"])
        set_values(model, raw_env, train_env, member_values(params), w)
        copy_s = time.time() - t_copy
        t_learn = time.time()
        state, _, detail = _learn(model, callback, to_step, resume=ready > 0)
        learn_s = time.time() - t_learn
        stats = callback.evals[-1] if callback.evals else None
        out = {"steps": int(model.num_timesteps), "wall_s": time.time() - start, "copy_s": copy_s,
               "eval_s": callback.eval_s, "train_s": learn_s - callback.eval_s}
        if state == "stopped_at_deadline" or (state != "failed" and stats is None):
            return {**out, "members": [], "stopped": True}
        if state != "failed":
            checkpoint.save(group_path(state_dir, ready + 1, group), {"ids": [member], "steps": int(model.num_timesteps)},
                            sb3_state.checkpoint_state(model, raw_env, train_env, callback, {}))
        failed = detail if state == "failed" else None
        member_out = {"id": member, "value": None if failed else float(stats.true_metric),
                      "se": None if failed else stats.true_metric_se,
                      "eval": None if failed else dataclasses.asdict(stats), "failed": failed}
        return {**out, "members": [member_out], "stopped": False}
    finally:
        torch.set_num_threads(threads)


def run_member_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_member(**kwargs)``."""
    return train_member(**kwargs)


class ScheduleCallback(BaseCallback):
    """Replays a schedule [{from_step, values, weights}] in SB3's learn loop: at each rollout start the
    latest point at or before the step count is in force (values set as ``set_values`` does)."""

    def __init__(self, schedule: Sequence[Mapping], raw_env: Any, train_env: Any):
        super().__init__(verbose=0)
        self.points = sorted(schedule, key=lambda p: int(p["from_step"]))
        self.raw_env, self.train_env, self.applied = raw_env, train_env, None

    def _on_rollout_start(self) -> None:
        due = [i for i, p in enumerate(self.points) if int(p["from_step"]) <= self.model.num_timesteps]
        if due and due[-1] != self.applied:
            self.applied = due[-1]
            p = self.points[due[-1]]
            set_values(self.model, self.raw_env, self.train_env, p.get("values") or {}, p.get("weights") or None)

    def _on_step(self) -> bool:
        return True

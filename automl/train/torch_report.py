"""What leaves the torch trainer: evaluation on the eval envs, TensorBoard logs and SB3-loadable model files.

Everything here works on the seed axis (tensors [S, ...]) and keeps data on the env's device; the host sees
one copy per evaluation and per logged update.
"""
from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

import torch

from automl.train.evaluation import EVAL_SEED_OFFSET, EvalStats, hparam_values, success_se

if TYPE_CHECKING:
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from torch.utils.tensorboard.writer import FileWriter


def evaluate_stacked(run: Any, seeds: Sequence[int], *, deadline: float | None,
                     check_every: int = 16) -> list[EvalStats] | None:
    """One deterministic episode per eval env of every seed (eval envs re-seeded with seed + EVAL_SEED_OFFSET,
    so every evaluation starts from the same states); None when the deadline passes first.

    The semantics of ``automl.train.evaluation.evaluate``; the first finished episode of each env is kept on the
    device (episodes end by the task's time limit), and the host checks for "all done" every ``check_every`` steps.
    """
    from envs.batched import N_STATS, RETURN, SUCCESS, TRUE_RETURN

    policy, envs_ = run.policy, run.eval_envs
    S, E = len(envs_), envs_[0].num_envs
    obs = torch.stack([env.reset(seed=seed + EVAL_SEED_OFFSET) for env, seed in zip(envs_, seeds)]).float()
    finished = torch.zeros(S, E, dtype=torch.bool, device=run.device)
    record = torch.zeros(S, *envs_[0].info["episode_stats"].shape, device=run.device)
    with torch.no_grad():
        for step in range(envs_[0].max_episode_steps):
            if deadline is not None and time.time() >= deadline:
                return None
            x = run.norm.normalize_(obs.clone()) if run.norm is not None else obs
            action = policy.deterministic(policy.actor(x))
            if not policy.discrete:
                action = torch.maximum(torch.minimum(action, run.high), run.low)
            for s, env in enumerate(envs_):
                next_obs, _, terminated, truncated, info = env.step(action[s])
                done = terminated | truncated
                record[s].lerp_(info["episode_stats"].float(), (done & ~finished[s]).float())
                finished[s] |= done
                obs[s].copy_(next_obs)
            if step % check_every == check_every - 1 and bool(finished.all()):
                break
    rows, done = record.cpu(), finished.cpu()
    names = envs_[0].reward_terms
    has_success = envs_[0].true_metric == "success_rate"
    out = []
    for s in range(S):
        kept = rows[s][:, done[s]].double()
        n = kept.shape[1]
        mean = (lambda row: float(kept[row].mean()) if n else math.nan)
        success = mean(SUCCESS) if has_success and n else None
        value = (success if success is not None else math.nan) if run.true_metric == "success_rate" else mean(TRUE_RETURN)
        terms = {name: mean(N_STATS + i) for i, name in enumerate(names)} if n else {}
        ref_se = float(kept[TRUE_RETURN].std() / math.sqrt(n)) if n > 1 else None
        if run.true_metric == "success_rate":
            se = success_se(success, n) if success is not None else None
        else:
            se = ref_se
        column = (lambda row: [float(v) if d else math.nan for v, d in zip(rows[s][row].double().tolist(), done[s].tolist())])
        per_episode = {"shaped_return": column(RETURN), "reference_return": column(TRUE_RETURN)}
        if success is not None:
            per_episode["success_rate"] = column(SUCCESS)
        if run.true_metric != "success_rate" or success is not None:
            per_episode["true_metric"] = per_episode["success_rate" if run.true_metric == "success_rate" else "reference_return"]
        out.append(EvalStats(run.steps, value, mean(RETURN), mean(TRUE_RETURN), success, terms, n, se, ref_se,
                             per_episode))
    return out


class TBLogger:
    """One TensorBoard run per seed (``<tb_dir>/seed_<seed>``): HParams, training scalars per update, evaluations."""

    def __init__(self, tb_dir: str, seeds: Sequence[int], hparams: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.writers = [SummaryWriter(os.path.join(tb_dir, f"seed_{seed}")) for seed in seeds]
        summaries = hparams_summary(hparam_values({**hparams, "trainer": "torch"}), {"eval/true_metric": 0.0})
        for writer in self.writers:
            for summary in summaries:
                # typed None on the class; SummaryWriter.__init__ has created it
                cast("FileWriter", writer.file_writer).add_summary(summary)

    def update(self, stats: Mapping[str, torch.Tensor], lr: float | torch.Tensor, steps: int, elapsed: float) -> None:
        keys = ("pg", "value", "entropy", "kl", "clip", "loss")
        names = ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction", "loss")
        values = torch.stack([stats[k].float() for k in keys]).cpu().tolist()
        lrs = lr.tolist() if isinstance(lr, torch.Tensor) else [lr] * len(self.writers)
        for s, writer in enumerate(self.writers):
            for name, row in zip(names, values):
                writer.add_scalar(f"train/{name}", row[s], steps)
            writer.add_scalar("train/learning_rate", lrs[s], steps)
            writer.add_scalar("time/fps", steps / max(elapsed, 1e-9), steps)

    def evals(self, stats: Sequence[EvalStats], steps: int) -> None:
        for writer, e in zip(self.writers, stats):
            writer.add_scalar("eval/true_metric", e.true_metric, steps)
            writer.add_scalar("eval/shaped_return", e.shaped_return, steps)
            writer.add_scalar("eval/reference_return", e.reference_return, steps)
            if e.success_rate is not None:
                writer.add_scalar("eval/success_rate", e.success_rate, steps)
            for name, value in e.terms.items():
                writer.add_scalar(f"eval/terms/{name}", value, steps)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def save_sb3(run: Any, seed_index: int, save_path: str, env: str) -> None:
    """Seed ``seed_index``'s policy as an SB3 PPO zip (``PPO.load(save_path + '.zip')``), plus VecNormalize
    statistics beside it when normalising (``<save_path>_vecnormalize.pkl``, as the SB3 path writes them)."""
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    import envs

    args = run.args
    vec = envs.make_vec(env, 1, device="cpu")
    model = PPO("MlpPolicy", vec, policy_kwargs=run.policy.sb3_policy_kwargs(), device="cpu", seed=run.seeds[seed_index],
                learning_rate=args.learning_rate, n_steps=args.n_steps * args.num_envs, batch_size=args.batch_size,
                n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_range,
                clip_range_vf=args.clip_range_vf, ent_coef=args.ent_coef, vf_coef=args.vf_coef,
                max_grad_norm=args.max_grad_norm, target_kl=args.target_kl)
    model.policy.load_state_dict(run.policy.sb3_state_dict(seed_index))
    model.num_timesteps = int(run.steps)
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    model.save(save_path)
    if run.norm is not None:
        norm = VecNormalize(vec, gamma=args.gamma, training=False)
        obs_rms, ret_rms = run.norm.obs_rms, run.norm.ret_rms
        norm_obs = cast("RunningMeanStd", norm.obs_rms)  # a Box observation space: one RunningMeanStd, not a dict
        norm_obs.mean = obs_rms.mean[seed_index].cpu().numpy().copy()
        norm_obs.var = obs_rms.var[seed_index].cpu().numpy().copy()
        norm_obs.count = float(obs_rms.count)
        # SB3 types mean/var as ndarray; the return statistics (shape ()) hold np.float64 scalars, as SB3 leaves them
        norm.ret_rms.mean = np.float64(ret_rms.mean[seed_index].item())  # type: ignore[assignment]
        norm.ret_rms.var = np.float64(ret_rms.var[seed_index].item())  # type: ignore[assignment]
        norm.ret_rms.count = float(ret_rms.count)
        norm.save(save_path.removesuffix(".zip") + "_vecnormalize.pkl")
    vec.close()

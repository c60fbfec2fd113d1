"""What a torch-trainer job needs to continue where it was: the checkpoint's header and state.

The torch trainer's side of checkpoints (automl.train.checkpoint stores the file atomically): the stacked
parameters, per-seed Adam moments, normalisation statistics, every seed's env tensors and
generator, the action-noise and minibatch generators, the evaluations so far and which seeds failed,
so a resumed batch continues bit for bit (CPU; on CUDA up to kernel nondeterminism).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch

from automl.train.evaluation import EvalStats
from automl.train.checkpoint import job_header


def header(setup: Any, *, env: str, seeds: Sequence[int], total: int, reward_weights: Mapping | None,
           eval_every: int | None, eval_episodes: int, device: str) -> dict:
    """What a checkpoint must match to be resumed: the SB3 path's header plus the trainer and the seed batch."""
    base = job_header(setup, env=env, seed=int(seeds[0]), total=total, reward_weights=reward_weights,
                             eval_every=eval_every, eval_episodes=eval_episodes, device=device)
    return {**base, "trainer": "torch", "seeds": [int(s) for s in seeds]}


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().clone()


def _stats(rms: Any) -> dict:
    return {"mean": _cpu(rms.mean), "var": _cpu(rms.var), "count": float(rms.count)}


def _load_stats(rms: Any, state: Mapping) -> None:
    rms.mean.copy_(state["mean"])
    rms.var.copy_(state["var"])
    rms.count = float(state["count"])


def run_state(run: Any, *, next_eval: int, eval_s: float, spent: Mapping[str, float],
              evals: Sequence[Sequence[EvalStats]] | None = None) -> dict:
    """Everything to continue ``run`` (an automl.train.torch_ppo.SeedBatch) at this rollout boundary, on the CPU,
    with the loop's part (``evals``: every seed's evaluations so far; none when not given)."""
    norm = run.norm
    return {
        "steps": int(run.steps), "next_eval": int(next_eval), "eval_s": float(eval_s),
        **{k: float(v) for k, v in spent.items()},
        "params": {k: _cpu(v) for k, v in run.policy.params.items()},
        "adam": {"exp_avg": [_cpu(m) for m in run.optimizer.exp_avg],
                 "exp_avg_sq": [_cpu(v) for v in run.optimizer.exp_avg_sq], "steps": _cpu(run.optimizer.steps),
                 "hp": run.optimizer_values()},  # weight decay, betas, eps (the tuner may have set them)
        "norm": None if norm is None else {"obs": _stats(norm.obs_rms), "ret": _stats(norm.ret_rms),
                                           "returns": _cpu(norm.returns)},
        "envs": [env.state_dict() for env in run.envs],
        "noise_gens": [g.get_state() for g in run.noise_gens],
        "perm_gens": [g.get_state() for g in run.perm_gens],
        "next_obs": _cpu(run.next_obs),
        "failed": [[int(s), int(steps), str(detail)] for s, (steps, detail) in sorted(run.failed.items())],
        "evals": [[dataclasses.asdict(e) for e in seed_evals] for seed_evals in (evals or [[] for _ in run.seeds])],
        # the per-seed values a schedule, PBT or the tuner set (None: the config's)
        "hp": None if run.hp is None else {k: _cpu(v) for k, v in run.hp.items()},
        "reward_weights": [dict(env.reward_weights) for env in run.envs],
    }


def restore(run: Any, state: Mapping, *, total: int) -> dict:
    """Put a SeedBatch where the checkpoint left it (ValueError when it does not fit this run); returns the
    loop's part ({evals: [[EvalStats]] per seed, next_eval, eval_s, train_s, wall_s})."""
    steps = int(state["steps"])
    if not 0 < steps <= total:
        raise ValueError(f"checkpoint at {steps} steps (allowed: 0 < steps <= {total})")
    params = run.policy.params
    if set(state["params"]) != set(params) or any(state["params"][k].shape != v.shape for k, v in params.items()):
        raise ValueError("checkpoint: network shapes do not match this config")
    with torch.no_grad():
        for k, v in params.items():
            v.copy_(state["params"][k])
        opt = run.optimizer
        for mine, saved in zip(opt.exp_avg + opt.exp_avg_sq, state["adam"]["exp_avg"] + state["adam"]["exp_avg_sq"]):
            mine.copy_(saved)
        opt.steps.copy_(state["adam"]["steps"])
        if state["adam"].get("hp"):  # (older files hold none: the defaults stay)
            run.set_values(0, state["adam"]["hp"])
        if run.norm is not None:
            _load_stats(run.norm.obs_rms, state["norm"]["obs"])
            _load_stats(run.norm.ret_rms, state["norm"]["ret"])
            run.norm.returns.copy_(state["norm"]["returns"])
            run.norm._refresh()
        run.next_obs.copy_(state["next_obs"])
    for env, saved in zip(run.envs, state["envs"]):
        env.load_state_dict(saved)
    for gens, saved in ((run.noise_gens, state["noise_gens"]), (run.perm_gens, state["perm_gens"])):
        for g, s in zip(gens, saved):
            g.set_state(s)
    run.failed = {int(s): (int(at), str(detail)) for s, at, detail in state["failed"]}
    run.alive.fill_(True)
    for s in run.failed:
        run.alive[s] = False
    # the values and weights in force (None: the config's; older files hold neither)
    run.hp = None if state.get("hp") is None else {k: v.to(run.device).clone() for k, v in state["hp"].items()}
    if run.norm is not None:
        run.norm.gamma = run.args.gamma if run.hp is None else run.hp["gamma"].double().view(-1, 1)
    for s, weights in enumerate(state.get("reward_weights") or []):  # (an env's state holds its weights' tensor only)
        for env in (run.envs[s], run.eval_envs[s]):
            if dict(env.reward_weights) != dict(weights):
                env.set_reward_weights(weights)
    run.steps = steps
    return {"evals": [[EvalStats(**e) for e in seed_evals] for seed_evals in state["evals"]],
            "next_eval": int(state.get("next_eval", 0)), "eval_s": float(state.get("eval_s", 0.0)),
            "train_s": float(state.get("train_s", 0.0)), "wall_s": float(state.get("wall_s", 0.0))}

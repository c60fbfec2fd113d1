"""Population-based training on the torch trainer: the population is one batched computation.

Members sit on the seed axis of one ``automl.train.torch_ppo.Run`` (each with its own env stream, seed,
networks, Adam moments and normalisation statistics) and carry their own MEMBER_PARAMS values and
reward weights as per-seed tensors. A job trains a group of members from one ready point to the next
(``run_segment_job``): it restores the group's state saved at the last ready point, carries out the
driver's decisions (full-state copies, then the explored values), trains, evaluates and saves the
group's state for the next ready point. A copy is an in-memory tensor copy when both members are in the
job; across groups (``--n-jobs`` > 1) the source's slice is read from its group's file of the same
ready point. Files are kept per ready point, so a copy never reads a state being rewritten.

What a copy takes (``copy_member``): policy and value networks, Adam moments and step counts,
observation and return normalisation statistics, the MEMBER_PARAMS values and reward weights (the
driver then explores them). What stays: the member's envs, their episodes and generators (its own seed's
data stream) and its evaluation history. The schedule position is shared: members step together.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping, Sequence

import torch

from automl.train import checkpoint, torch_state
from automl.train.torch_ppo import MEMBER_PARAMS, Args, Run, advantages, check_finite, collect, update
from automl.train.torch_rollout import evaluate_stacked
from automl.train.training import _to_setup

_STRUCTURAL = ("schedule", "n_steps", "batch_size", "n_epochs", "clip_range_vf", "target_kl", "normalize_advantage",
               "num_envs", "normalize", "policy_kwargs")


def member_values(params: Mapping) -> dict[str, float]:
    """The MEMBER_PARAMS values (SB3 names) a config's params give a member (SB3's defaults where unset)."""
    kwargs = _to_setup(params).ppo_kwargs
    return {k: float(kwargs.get(k, getattr(Args, k))) for k in MEMBER_PARAMS}


def shared_args(member_params: Sequence[Mapping]) -> Args:
    """The Args every member shares (the first member's), ValueError when a structural value differs."""
    all_args = [Args.from_setup(_to_setup(p)) for p in member_params]
    for i, a in enumerate(all_args[1:], 1):
        diff = [k for k in _STRUCTURAL if getattr(a, k) != getattr(all_args[0], k)]
        if diff:
            raise ValueError(f"population: member {i} differs in {', '.join(diff)} (allowed: members differ only in "
                             f"{', '.join(MEMBER_PARAMS)} and reward weights)")
    return all_args[0]


def copy_member(run: Run, dst: int, src: int) -> None:
    """Member ``dst`` takes member ``src``'s learned state and values, in memory (same Run)."""
    with torch.no_grad():
        for p in run.policy.parameters():
            p[dst].copy_(p[src])
        opt = run.optimizer
        for t in [*opt.exp_avg, *opt.exp_avg_sq, opt.steps]:
            t[dst].copy_(t[src])
        if run.norm is not None:
            for rms in (run.norm.obs_rms, run.norm.ret_rms):
                rms.mean[dst].copy_(rms.mean[src])
                rms.var[dst].copy_(rms.var[src])
            run.norm._refresh()
    values = {k: float(run.hp[k][src]) for k in MEMBER_PARAMS} if run.hp is not None else {}
    run.set_values(dst, values, run.envs[src].reward_weights)


def copy_member_from(run: Run, dst: int, state: Mapping, pos: int, values: Mapping, weights: Mapping) -> None:
    """Member ``dst`` takes the learned state of position ``pos`` of another group's saved run state."""
    with torch.no_grad():
        for k, p in run.policy.params.items():
            p[dst].copy_(state["params"][k][pos])
        opt, saved = run.optimizer, state["adam"]
        for mine, theirs in zip(opt.exp_avg + opt.exp_avg_sq, saved["exp_avg"] + saved["exp_avg_sq"]):
            mine[dst].copy_(theirs[pos])
        opt.steps[dst] = saved["steps"][pos]
        if run.norm is not None:
            for rms, key in ((run.norm.obs_rms, "obs"), (run.norm.ret_rms, "ret")):
                rms.mean[dst].copy_(state["norm"][key]["mean"][pos])
                rms.var[dst].copy_(state["norm"][key]["var"][pos])
            run.norm._refresh()
    run.set_values(dst, values, weights)


def group_path(state_dir: str, ready: int, group: int) -> str:
    """The saved state of ``group`` at ready point ``ready`` (0: none, members start fresh)."""
    return os.path.join(state_dir, f"r{ready:04d}", f"g{group}.pt")


def train_segment(member_params: Sequence[Mapping], *, env: str, seeds: Sequence[int], ids: Sequence[int],
                  weights: Sequence[Mapping], copies: Mapping[int, tuple[int, int]] | None = None,
                  state_dir: str, group: int, ready: int, to_step: int, total_steps: int, eval_episodes: int = 32,
                  deadline: float | None = None, device: str = "auto") -> dict:
    """Train members ``ids`` (this group, always the same ids in the same order) from ready point
    ``ready`` to env step ``to_step``, evaluate them and save the group's state as ready point ``ready + 1``.

    ``member_params``/``weights``: each member's config after the driver's decisions (after a copy, the
    explored values). ``copies``: {dst id: (src id, src group)}, carried out before training.
    Returns {"members": [{id, value, eval, failed}], "steps", "stopped", "wall_s", "train_s", "eval_s", "copy_s"}.
    """
    import envs

    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = shared_args(member_params)
        dev = torch.device(str(envs.resolve_device(device)))
        run = Run(args, env, seeds, eval_episodes=eval_episodes, device=dev, reward_weights=None)
        run.reset()
        t_copy = time.time()
        if ready > 0:
            saved = checkpoint.load(group_path(state_dir, ready, group))
            if saved["header"].get("ids") != list(ids):
                raise ValueError(f"population state {group_path(state_dir, ready, group)}: members "
                                 f"{saved['header'].get('ids')} (allowed: {list(ids)})")
            torch_state.restore(run, saved["state"], total=total_steps + 1)
        others: dict[int, dict] = {}
        for dst_id, (src_id, src_group) in sorted((copies or {}).items()):
            dst = list(ids).index(dst_id)
            if src_group == group:
                copy_member(run, dst, list(ids).index(src_id))
            else:
                if src_group not in others:
                    others[src_group] = checkpoint.load(group_path(state_dir, ready, src_group))
                other = others[src_group]
                copy_member_from(run, dst, other["state"], other["header"]["ids"].index(src_id), {}, None)
        for s, (p, w) in enumerate(zip(member_params, weights)):  # a copy's explored values included
            run.set_values(s, member_values(p), w)
        copy_s = time.time() - t_copy
        stopped = False
        while run.steps < to_step and run.live():
            if not collect(run, deadline):
                stopped = True
                break
            advantages(run)
            factor = 1.0 - run.steps / total_steps if args.schedule == "linear" else 1.0
            check_finite(run, update(run, run.hp["learning_rate"] * max(factor, 0.0)))
        t_eval = time.time()
        stats = None if stopped else evaluate_stacked(run, seeds, deadline=deadline)
        eval_s = time.time() - t_eval
        if stats is None:
            return {"members": [], "steps": run.steps, "stopped": True, "wall_s": time.time() - start,
                    "train_s": t_eval - start, "eval_s": eval_s, "copy_s": copy_s}
        for s in run.live():
            run.evals[s].append(stats[s])
        checkpoint.save(group_path(state_dir, ready + 1, group), {"ids": list(ids), "steps": run.steps},
                        torch_state.run_state(run, next_eval=0, eval_s=0.0, spent={}))
        members = []
        for s, member in enumerate(ids):
            failed = run.failed.get(s)
            members.append({"id": int(member), "value": None if failed else float(stats[s].true_metric),
                            "se": None if failed else stats[s].true_metric_se,
                            "eval": None if failed else dataclasses.asdict(stats[s]),
                            "failed": failed[1] if failed else None})
        return {"members": members, "steps": run.steps, "stopped": False, "wall_s": time.time() - start,
                "train_s": t_eval - start - copy_s, "eval_s": eval_s, "copy_s": copy_s}
    finally:
        torch.set_num_threads(threads)


def run_segment_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_segment(**kwargs)`` (the deadline stops it; nothing to report mid-way)."""
    return train_segment(**kwargs)

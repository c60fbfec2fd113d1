"""Population-based training on the torch trainer: the population is one batched computation.

Members sit on the seed axis of one ``automl.train.torch_ppo.SeedBatch`` (each with its own env stream, seed,
networks, Adam moments and normalisation statistics) and carry their own MEMBER_PARAMS values and
reward weights as per-seed tensors. A job trains a group of members from one ready point to the next
(``run_segment_job``) through the seed-job loop (``automl.train.loop.train``: the same path as a checkpoint
resume or a promotion to a longer run): it restores the group's state saved at the last ready point,
carries out the driver's decisions (full-state copies, then the explored values), trains, evaluates and
saves the group's state for the next ready point. A copy is an in-memory tensor copy when both members are in the
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

from automl.train import checkpoint, loop
from automl.train.result import to_setup
from automl.train.torch_ppo import MEMBER_PARAMS, Args, SeedBatch
from automl.train.torch_train import TorchTrainer

_STRUCTURAL = ("schedule", "n_steps", "batch_size", "n_epochs", "clip_range_vf", "target_kl", "normalize_advantage",
               "num_envs", "normalize", "policy_kwargs")


def member_values(params: Mapping) -> dict[str, float]:
    """The MEMBER_PARAMS values (SB3 names) a config's params give a member (SB3's defaults where unset)."""
    kwargs = to_setup(params).ppo_kwargs
    return {k: float(kwargs.get(k, getattr(Args, k))) for k in MEMBER_PARAMS}


def shared_args(member_params: Sequence[Mapping]) -> Args:
    """The Args every member shares (the first member's), ValueError when a structural value differs."""
    all_args = [Args.from_setup(to_setup(p)) for p in member_params]
    for i, a in enumerate(all_args[1:], 1):
        diff = [k for k in _STRUCTURAL if getattr(a, k) != getattr(all_args[0], k)]
        if diff:
            raise ValueError(f"population: member {i} differs in {', '.join(diff)} (allowed: members differ only in "
                             f"{', '.join(MEMBER_PARAMS)} and reward weights)")
    return all_args[0]


def copy_member(run: SeedBatch, dst: int, src: int) -> None:
    """Member ``dst`` takes member ``src``'s learned state and values, in memory (same SeedBatch)."""
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


def copy_member_from(run: SeedBatch, dst: int, state: Mapping, pos: int, values: Mapping,
                     weights: Mapping | None) -> None:
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
        saved = None
        if ready > 0:
            saved = checkpoint.load(group_path(state_dir, ready, group))
            if saved["header"].get("ids") != list(ids):
                raise ValueError(f"population state {group_path(state_dir, ready, group)}: members "
                                 f"{saved['header'].get('ids')} (allowed: {list(ids)})")
        timing = {"copy_s": 0.0}

        def build() -> TorchTrainer:
            return TorchTrainer(args, env, seeds, eval_episodes=eval_episodes, device=str(envs.resolve_device(device)),
                                reward_weights=None)

        def decisions(trainer: TorchTrainer) -> None:
            t_copy = time.time()
            _copies(trainer.batch, ids, copies or {}, state_dir, ready, group)
            for s, (p, w) in enumerate(zip(member_params, weights)):  # a copy's explored values included
                trainer.batch.set_values(s, member_values(p), w)
            timing["copy_s"] = time.time() - t_copy

        def save(trainer: TorchTrainer, job: loop.SeedJob) -> None:
            if job.stop is None and job.last is not None:
                checkpoint.save(group_path(state_dir, ready + 1, group), {"ids": list(ids), "steps": trainer.steps},
                                trainer.state({**job.loop_state(), "next_eval": 0, "eval_s": 0.0}))

        plan = loop.Plan(total_steps, None, deadline, until=to_step, always_evaluate_at_end=True)
        trainer, ended = loop.train(build, plan, start_state=saved["state"] if saved else None, before=decisions,
                                    after=save)
        return segment_result(trainer, ended, ids, start=start, copy_s=timing["copy_s"])
    finally:
        torch.set_num_threads(threads)


def _copies(run: SeedBatch, ids: Sequence[int], copies: Mapping[int, tuple[int, int]], state_dir: str, ready: int,
            group: int) -> None:
    """The driver's copies {dst id: (src id, src group)}: in memory within the group, else from the source's file."""
    others: dict[int, dict] = {}
    for dst_id, (src_id, src_group) in sorted(copies.items()):
        dst = list(ids).index(dst_id)
        if src_group == group:
            copy_member(run, dst, list(ids).index(src_id))
        else:
            if src_group not in others:
                others[src_group] = checkpoint.load(group_path(state_dir, ready, src_group))
            other = others[src_group]
            copy_member_from(run, dst, other["state"], other["header"]["ids"].index(src_id), {}, None)


def segment_result(trainer: Any, ended: loop.Ended, ids: Sequence[int], *, start: float, copy_s: float) -> dict:
    """A segment job's result (both trainers): every member's value at the ready point, or ``stopped``."""
    out = {"steps": trainer.steps if trainer is not None else 0, "wall_s": time.time() - start, "copy_s": copy_s,
           "eval_s": ended.eval_s, "train_s": time.time() - start - copy_s - ended.eval_s}
    failed = trainer.failed() if trainer is not None else {}
    if trainer is None or ended.stop is not None or (ended.last is None and len(failed) < len(ids)):
        return {**out, "members": [], "stopped": True}
    members = []
    for s, member in enumerate(ids):
        why = failed.get(s)
        stats = ended.last[s] if ended.last is not None else None
        if why:
            members.append({"id": int(member), "value": None, "se": None, "eval": None, "failed": why[1]})
            continue
        assert stats is not None  # ended.last is None only when every member failed (returned above otherwise)
        members.append({"id": int(member), "value": float(stats.true_metric), "se": stats.true_metric_se,
                        "eval": {k: v for k, v in dataclasses.asdict(stats).items() if k != "per_episode"}, "failed": None})
    return {**out, "members": members, "stopped": False}


def run_segment_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_segment(**kwargs)`` (the deadline stops it; nothing to report mid-way)."""
    return train_segment(**kwargs)

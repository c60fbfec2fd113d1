"""Population-based training on the SB3 trainer: one member per job, copies through checkpoint files.

SB3 trains one model per process, so each member is its own group (``automl.run.pbt`` submits one job
per member). ``train_member`` has ``automl.train.torch_pbt.train_segment``'s arguments and result and
goes the same way through the seed-job loop (``automl.train.loop.train``): it restores the member's
checkpoint of the last ready point, takes a better member's policy, optimizer and VecNormalize
statistics from that member's file of the same ready point when told to copy, then sets the member's
values, trains to the next ready point, evaluates and saves. Values are set **after** every restore:
loading a saved PPO or its optimizer state brings back the saved learning rate and coefficients, which
is how perturbed values get silently undone (Ray Tune #62173). A member's schedule is replayed in a plain
``train_seed`` by the loop (``automl.train.loop.Schedule``, the test phase).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from automl.train import checkpoint, loop, sb3_state
from automl.train.sb3_train import SB3Trainer, build_run
from automl.train.torch_pbt import group_path, member_values, segment_result


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
        own = checkpoint.load(group_path(state_dir, ready, group)) if ready > 0 else None
        timing = {"copy_s": 0.0}

        def build() -> SB3Trainer:
            return build_run(params, env, seed=seed, eval_episodes=eval_episodes, device=str(resolve_device(device)),
                             reward_weights=w or None)

        def decisions(trainer: SB3Trainer) -> None:
            t_copy = time.time()
            copy = (copies or {}).get(member)
            if own is not None and copy is not None:
                sb3_state.take(trainer.model, trainer.train_env, checkpoint.load(group_path(state_dir, ready, copy[1]))["state"])
            trainer.set_values(member_values(params), w)
            timing["copy_s"] = time.time() - t_copy

        def save(trainer: SB3Trainer, job: loop.SeedJob) -> None:
            if job.stop is None and job.last is not None and not trainer.failed():
                checkpoint.save(group_path(state_dir, ready + 1, group), {"ids": [member], "steps": trainer.steps},
                                trainer.state(job.loop_state()))

        plan = loop.Plan(total_steps, None, deadline, until=to_step, always_evaluate_at_end=True)
        trainer, ended = loop.train(build, plan, start_state=own["state"] if own else None, before=decisions,
                                    after=save)
        return segment_result(trainer, ended, [member], start=start, copy_s=timing["copy_s"])
    finally:
        torch.set_num_threads(threads)


def run_member_job(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_member(**kwargs)``."""
    return train_member(**kwargs)

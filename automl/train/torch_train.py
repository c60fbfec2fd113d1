"""The torch trainer's entry points: train one config on a batch of seeds, evaluate, checkpoint, save.

The loop around the algorithm in ``automl.train.torch_ppo`` (collect, advantages, update, check_finite):
evaluations every ``eval_every`` steps, the channel (pruning reports, stop requests), the deadline,
checkpoints (``automl.train.torch_state``), TensorBoard and the SB3-loadable model files. The same
arguments and SeedResult as ``automl.train.training.train_seed``.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from automl.train import checkpoint, torch_state
from automl.core.config import PPOSetup
from automl.train.torch_ppo import Args, Run, advantages, check_finite, collect, update
from automl.train.torch_rollout import TBLogger, evaluate_stacked, save_sb3
from automl.train.training import SeedResult, _hparams, _result, _to_setup


def train_seeds_torch(params: Mapping | PPOSetup, *, env: str, seeds: Sequence[int], total_steps: int | None = None,
                      reward_weights: Mapping | None = None, eval_every: int | None = None, eval_episodes: int = 32,
                      deadline: float | None = None, device: str = "auto", tb_dir: str | None = None,
                      save_paths: Sequence[str | None] | None = None, channel: Any = None,
                      checkpoint_path: str | None = None, checkpoint_every: int | None = None,
                      schedule: Sequence[Mapping] | None = None) -> list[SeedResult]:
    """Train one config on every seed in ``seeds`` as one batched computation; one SeedResult per seed.

    Each seed is what ``train_seed`` would make of it (own env stream, init, optimizer, normalisation);
    a seed that diverges fails alone. The channel gets, per evaluation, the mean over the live seeds;
    a stop request or the deadline stops every seed. ``wall_s`` etc. are the batch's (seeds run together).
    ``checkpoint_path``/``checkpoint_every``: as ``train_seed`` (one file for the whole batch).
    ``schedule``: [{from_step, values, weights}] in step order, a population member's history replayed
    (``automl.train.torch_pbt``): from ``from_step`` on, every seed trains with those MEMBER_PARAMS values
    and reward weights (applied at the first rollout boundary at or after it).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train_seed: parallelism comes from worker processes (and here, the seed axis)
    try:
        return _train(params, env=env, seeds=list(seeds), total_steps=total_steps, reward_weights=reward_weights,
                      eval_every=eval_every, eval_episodes=eval_episodes, deadline=deadline, device=device,
                      tb_dir=tb_dir, save_paths=save_paths, channel=channel, checkpoint_path=checkpoint_path,
                      checkpoint_every=checkpoint_every, schedule=list(schedule or []))
    finally:
        torch.set_num_threads(threads)


def train_seed_torch(params: Mapping | PPOSetup, *, env: str, seed: int, total_steps: int | None = None,
                     reward_weights: Mapping | None = None, eval_every: int | None = None, eval_episodes: int = 32,
                     deadline: float | None = None, device: str = "auto", tb_dir: str | None = None,
                     save_path: str | None = None, channel: Any = None, checkpoint_path: str | None = None,
                     checkpoint_every: int | None = None, schedule: Sequence[Mapping] | None = None) -> SeedResult:
    """``automl.train.training.train_seed`` with the torch trainer (batched tasks only); never raises for a
    diverging config. ``save_path`` writes an SB3 ``PPO`` zip (``PPO.load(save_path + '.zip')``)."""
    return train_seeds_torch(params, env=env, seeds=[seed], total_steps=total_steps, reward_weights=reward_weights,
                             eval_every=eval_every, eval_episodes=eval_episodes, deadline=deadline, device=device,
                             tb_dir=tb_dir, save_paths=[save_path], channel=channel, checkpoint_path=checkpoint_path,
                             checkpoint_every=checkpoint_every, schedule=schedule)[0]


def _train(params, *, env, seeds, total_steps, reward_weights, eval_every, eval_episodes, deadline, device, tb_dir,
           save_paths, channel, checkpoint_path, checkpoint_every, schedule) -> list[SeedResult]:
    start = time.time()
    setup = _to_setup(params)
    args = Args.from_setup(setup)
    total = int(total_steps if total_steps is not None else (setup.n_timesteps or 0))
    if total <= 0:
        raise ValueError("train_seeds_torch: total_steps: not given and the config has no n_timesteps (allowed: > 0)")
    import envs

    if env not in envs.TASKS:
        raise ValueError(f"train_seeds_torch: env {env!r} (allowed: {', '.join(envs.TASKS)}; gymnasium ids use train_seed)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"train_seeds_torch: seeds {seeds!r} (allowed: distinct integers, at least one)")
    if deadline is not None and time.time() >= deadline:
        return [_result(s, "stopped_at_deadline", "deadline", [], wall_s=time.time() - start) for s in seeds]
    device = str(envs.resolve_device(device))

    def new_run() -> Run:
        fresh = Run(args, env, seeds, eval_episodes=eval_episodes, device=torch.device(device),
                    reward_weights=reward_weights)
        fresh.reset()
        return fresh

    run = new_run()
    rollout = args.n_steps * args.num_envs
    every = max(int(eval_every or total // 10), rollout)
    next_eval, state, reason, eval_s = every, None, None, 0.0
    prior, resumed_from, note = {"train_s": 0.0, "wall_s": 0.0, "eval_s": 0.0}, None, None
    if checkpoint_path:
        header = torch_state.header(setup, env=env, seeds=seeds, total=total, reward_weights=reward_weights,
                                    eval_every=eval_every, eval_episodes=eval_episodes, device=device)
        if schedule:
            header["schedule"] = schedule
        ckpt_every = max(int(checkpoint_every or every), rollout)
        saved, note = checkpoint.load_matching(checkpoint_path, header)
        if saved is not None:
            try:
                torch_state.restore(run, saved["state"], total=total)
                next_eval, eval_s = int(saved["state"]["next_eval"]), float(saved["state"]["eval_s"])
                prior.update(train_s=float(saved["state"]["train_s"]), wall_s=float(saved["state"]["wall_s"]), eval_s=eval_s)
                resumed_from = run.steps
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, start over rather than fail
                note = f"checkpoint could not be restored ({type(exc).__name__}: {str(exc)[:200]}); started from scratch"
                run = new_run()
        next_ckpt = (run.steps // ckpt_every + 1) * ckpt_every
    log = TBLogger(tb_dir, seeds, _hparams(params, reward_weights)) if tb_dir else None

    def spent() -> dict[str, float]:
        """Training and wall seconds of this job so far, checkpointed sessions included."""
        now = time.time() - start
        return {"train_s": prior["train_s"] + now - (eval_s - prior["eval_s"]), "wall_s": prior["wall_s"] + now}

    def save_checkpoint() -> None:
        nonlocal note
        try:
            checkpoint.save(checkpoint_path, {**header, "steps": run.steps},
                            torch_state.run_state(run, next_eval=next_eval, eval_s=eval_s, spent=spent()))
        except Exception as exc:  # noqa: BLE001 - a full disk must not end the run; it only loses resumability
            if "save failed" not in (note or ""):
                failed = f"checkpoint save failed at {run.steps} steps ({type(exc).__name__}: {str(exc)[:200]})"
                note = f"{note}; {failed}" if note else failed

    def evaluation() -> bool:
        """Evaluate every seed, log, report the live seeds' mean; False if the deadline hit."""
        nonlocal eval_s
        began = time.time()
        stats = evaluate_stacked(run, seeds, deadline=deadline)
        eval_s += time.time() - began
        if stats is None:
            return False
        live = run.live()
        for s in live:
            run.evals[s].append(stats[s])
        if log:
            log.evals(stats, run.steps)
        if channel is not None and live:
            value = sum(stats[s].true_metric for s in live) / len(live)
            channel.report({"eval_index": len(run.evals[live[0]]) - 1, "steps": run.steps, "value": value})
        return True

    def poll() -> tuple[str, str] | None:
        if channel is None or not channel.stop_requested():
            return None
        why = str(channel.stop_reason() or "stop requested")
        return ("stopped_at_deadline" if "deadline" in why.lower() else "pruned"), why

    pending = [p for p in schedule if int(p["from_step"]) > run.steps]
    for point in [p for p in schedule if int(p["from_step"]) <= run.steps][-1:]:  # where a resumed run stands
        _apply(run, point)
    while run.steps < total and run.live():
        while pending and run.steps >= int(pending[0]["from_step"]):
            _apply(run, pending.pop(0))
        if run.steps >= next_eval and run.steps > 0:  # after an update: the freshly trained policy
            next_eval = (run.steps // every + 1) * every
            if not evaluation():
                state, reason = "stopped_at_deadline", "deadline"
                break
        if checkpoint_path and run.steps >= next_ckpt:
            next_ckpt = (run.steps // ckpt_every + 1) * ckpt_every
            save_checkpoint()
        stop = poll()
        if stop:
            state, reason = stop
            break
        if not collect(run, deadline):
            state, reason = "stopped_at_deadline", "deadline"
            break
        advantages(run)
        remaining = 1.0 - run.steps / total
        base_lr = args.learning_rate if run.hp is None else run.hp["learning_rate"]
        lr = base_lr * (remaining if args.schedule == "linear" else 1.0)
        stats = update(run, lr)
        check_finite(run, stats)
        if log:
            log.update(stats, lr, run.steps, time.time() - start)
    if state is None and run.live() and (not run.evals[run.live()[0]] or run.evals[run.live()[0]][-1].steps < run.steps):
        if not evaluation():
            state, reason = "stopped_at_deadline", "deadline"
    if log:
        log.close()
    for s, path in enumerate(save_paths or []):
        if path and s not in run.failed:
            save_sb3(run, s, path, env)
    timing = {**spent(), "eval_s": eval_s, "resumed_from": resumed_from, "checkpoint_note": note,
              "params": sum(p.numel() for p in run.policy.params.values()) // len(seeds)}  # stacked: per seed
    results = []
    for s, seed in enumerate(seeds):
        if s in run.failed:
            steps, detail = run.failed[s]
            results.append(_result(seed, "failed", "non_finite", run.evals[s], steps=steps, reason=detail, **timing))
        else:
            results.append(_result(seed, state or "complete", reason or "step_budget", run.evals[s], steps=run.steps,
                                   **timing))
    return results


def _apply(run: Run, point: Mapping) -> None:
    """One schedule point on every seed of the run."""
    for s in range(len(run.seeds)):
        run.set_values(s, point.get("values") or {}, point.get("weights") or None)


def run_job_torch(channel: Any = None, **kwargs: Any) -> dict:
    """Executor job: ``train_seed_torch(**kwargs, channel=channel).to_dict()`` (picklable, top level)."""
    return train_seed_torch(channel=channel, **kwargs).to_dict()


def run_seeds_job_torch(channel: Any = None, **kwargs: Any) -> list[dict]:
    """Executor job for a batch of seeds: ``[r.to_dict() for r in train_seeds_torch(**kwargs, channel=channel)]``."""
    return [r.to_dict() for r in train_seeds_torch(channel=channel, **kwargs)]

"""Train one config on several seeds outside a staged run, with the run's own machinery.

The Python API's tuners call this: the same trainers' job functions (``automl.run.trainers``), the
same worker processes (``automl.exec``: a crash, NaN or hung seed becomes a failed seed, not a dead
process), the same ``Scheduler`` (evaluation k reaches the trial's pruner only once every live seed
reported it, as the objective over them; a pruned config stops its running seeds and drops the
queued ones) and the same ``ConfigRecord`` as the state file. There is no budget: the scheduler's
admission rule is not consulted, ``deadline`` (time.time()) and ``timeout_s`` bound a config.

    with SeedPool(n_workers=2) as runner:
        record = runner.train(trial, {"learning_rate": 1e-3}, env="cartpole", seeds=[0, 1], total_steps=20_000)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import optuna

from automl.core.record import ConfigRecord, Kind
from automl.core.scoring import score as score_seeds
from automl.run.budget import Budget, Throughput
from automl.run.defaults import TRAINERS, default_trainer
from automl.run.configrun import config_state, ConfigEnded, ConfigRun, SeedJobs
from automl.run.scheduler import Scheduler

NO_BUDGET_HOURS = 24 * 365.0  # the scheduler needs a budget; configs here are bounded by deadline and timeout


class SeedPool:
    """Worker processes that train configs seed by seed (or as one seed-batched job on CUDA)."""

    def __init__(self, n_workers: int = 1, *, executor=None):
        self.n_workers = int(n_workers)
        self._executor = executor

    @property
    def executor(self):
        """The worker pool, started on first use."""
        if self._executor is None:
            from automl.exec.executor import make_executor

            # the user's process keeps its own SIGTERM handling (and threads may call this); the job
            # functions are automl's trainers, so workers need not re-run the user's script
            self._executor = make_executor("local", n_jobs=self.n_workers, handle_sigterm=False,
                                           import_main=False)
        return self._executor

    def train(self, trial: optuna.Trial | None, params: Mapping[str, Any], *, env: str, seeds: Sequence[int],
              total_steps: int, eval_every: int | None = None, eval_episodes: int = 32, device: str = "auto",
              reward_weights: Mapping | None = None, deadline: float | None = None, trainer: str = "auto",
              objective: str = "mean", timeout_s: float | None = None, config_id: str = "config") -> ConfigRecord:
        """Train ``params`` on every seed; the trial (if any) gets evaluation k once all live seeds reached
        it and may prune the config. Returns its ConfigRecord: state complete | failed | pruned |
        stopped_at_deadline, one seed record per finished seed, and a score over the complete seeds."""
        from automl.run import trainers

        if trainer not in TRAINERS:
            raise ValueError(f"trainer: unknown {trainer!r} (allowed: {', '.join(TRAINERS)})")
        trainer = default_trainer(env) if trainer == "auto" else trainer
        batched = trainer == "torch" and trainers.on_cuda(device)
        kwargs = dict(params=dict(params), env=env, total_steps=int(total_steps), eval_every=eval_every,
                      eval_episodes=eval_episodes, device=device, deadline=deadline,
                      reward_weights=dict(reward_weights) if reward_weights else None)
        scheduler = Scheduler(self.executor, Budget(NO_BUDGET_HOURS), Throughput(steps_per_s=1.0),
                              n_jobs=self.n_workers, timeout_s=timeout_s, objective=objective)
        cfg = ConfigRun(trial=trial if trial is not None else _NoPruning(), config_id=config_id, kind=Kind.HP,
                        cycle=0, params=dict(params), weights=dict(reward_weights or {}), seeds=[int(s) for s in seeds],
                        train_params=dict(params), steps=int(total_steps))
        jobs = SeedJobs(fn=trainers.job_fn(trainer), seed_kwargs={s: {**kwargs, "seed": s} for s in cfg.seeds},
                        batch_fn=trainers.batch_fn(trainer) if batched else None,
                        batch_kwargs=kwargs if batched else None, own_deadline=True)
        done = [ev for ev in scheduler.add(cfg, jobs) if isinstance(ev, ConfigEnded)]
        try:
            while not done:
                done += [ev for ev in scheduler.step(0.25) if isinstance(ev, ConfigEnded)]
        except BaseException:  # Ctrl-C or a failing trial callback: nothing of this config keeps running
            for job_id in list(scheduler.jobs):
                self.executor.cancel(job_id)
            raise
        seeds_done = [cfg.results[s] for s in cfg.seeds if s in cfg.results]
        state = config_state(cfg)
        values = [r.get("episode_reward_mean") for r in seeds_done if r.get("state") == "complete"]
        score = score_seeds(values) if values else None
        reason = next((r.get("reason") or r.get("stop_reason") for r in seeds_done if r.get("state") != "complete"),
                      None)
        return ConfigRecord(config_id, Kind.HP, 0, state, dict(params), dict(reward_weights or {}),
                            seeds=seeds_done, score=score, reason=reason)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._executor is not None:
            self._executor.shutdown(grace_s=2.0)
            self._executor = None

    def __enter__(self) -> "SeedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _NoPruning:
    """The trial of a config trained without a study: reports go nowhere, nothing is pruned."""

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False

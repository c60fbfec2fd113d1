"""What one seed job of a run is handed: its trainer's arguments and checkpoint path.

``JobSpecs.of(config)`` builds a config's ``SeedJobs`` when the run hands the config to the scheduler
(``automl.run.outcomes.add``): each seed's arguments (``kwargs``) or those of one job of all its seeds,
from the run's settings, inputs and plan. The scheduler adds the phase's deadline and
the job's timeout at submission (``Scheduler.phase_deadline``, ``Scheduler.job_timeout``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from automl.core.record import Kind

from automl.run.configrun import ConfigRun, SeedJobs
from automl.run.inputs import Inputs
from automl.run.plan import Plan

if TYPE_CHECKING:  # annotations only
    from automl.run.runconfig import RunConfig


class JobSpecs:
    """The arguments of a run's seed jobs."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, run_dir: Path, plan: Plan, *, fn: Callable,
                 batch_fn: Callable | None = None):
        self.cfg, self.inputs, self.run_dir = cfg, inputs, Path(run_dir)
        self.plan = plan  # replaced when the run adopts its calibrated (or recorded) plan
        self.fn, self.batch_fn = fn, batch_fn  # the trainer's seed job; its job of several seeds (batched runs)

    def of(self, c: ConfigRun) -> SeedJobs:
        """What the seed jobs of ``c`` need (its queued seeds; as one batch job on a batched run)."""
        if self.batch_fn is not None:
            # one job for the queued seeds ("seeds" and "save_paths" filled at submission); a resumed config whose
            # seeds were all recorded has none queued, and ends as soon as the scheduler takes it
            seeds = list(c.pending) or list(c.seeds)
            kw = self.kwargs(c, seeds[0])
            for key in ("seed", "save_path"):
                kw.pop(key, None)
            kw.update(tb_dir=str(self.run_dir / "tb" / c.config_id / c.kind),
                      checkpoint_path=str(self.checkpoint_path(c, None)), checkpoint_every=self.checkpoint_every(len(seeds)))
            saves = {s: self.save_path(c, s) for s in c.seeds} if c.kind == Kind.HELDOUT else None
            return SeedJobs(fn=self.fn, seed_kwargs={}, batch_fn=self.batch_fn, batch_kwargs=kw, save_paths=saves)
        return SeedJobs(fn=self.fn, seed_kwargs={s: self.kwargs(c, s) for s in c.pending})

    def kwargs(self, c: ConfigRun, seed: int) -> dict:
        """The trainer's arguments for seed ``seed`` of config ``c``."""
        heldout = c.kind == Kind.HELDOUT
        run_dir = self.run_dir
        extra: dict[str, Any] = {"schedule": c.schedule} if c.schedule else {}
        if c.horizon:  # a ladder's climb: a prefix of a run of the top rung's length, paused at its rung
            extra["until_steps"] = c.steps
        return dict(**extra, params=c.train_params, env=self.inputs.env, seed=seed, total_steps=c.horizon or c.steps,
                    checkpoint_path=str(self.checkpoint_path(c, seed)), checkpoint_every=self.checkpoint_every(),
                    reward_weights=c.weights or None, eval_every=self.plan.eval_every,
                    eval_episodes=self.plan.eval_episodes, device=self.cfg.device,
                    tb_dir=str(run_dir / "tb" / c.config_id / f"{c.kind}_seed{seed}"),
                    save_path=self.save_path(c, seed) if heldout else None)

    def save_path(self, c: ConfigRun, seed: int) -> str:
        """Where a held-out seed job saves its model (the models best.yaml points at)."""
        return str(self.run_dir / "models" / c.config_id / f"seed_{seed}")

    def checkpoint_path(self, c: ConfigRun, seed: int | None) -> Path:
        """Where a seed job keeps its checkpoint (stable across resumes: config, kind, seed); seed None:
        the job that trains all of the config's seeds as one batch (its header names the seeds)."""
        name = f"{c.kind}_seeds.pt" if seed is None else f"{c.kind}_seed{seed}.pt"
        return self.run_dir / "checkpoints" / c.config_id / name

    def checkpoint_every(self, batch: int = 1) -> int:
        """Env steps (per seed) between checkpoints: about two minutes of a job of ``batch`` seeds."""
        from automl.train.checkpoint import default_checkpoint_every  # torch loads in the workers, not here

        return self.cfg.checkpoint_every or default_checkpoint_every(
            (self.plan.train_steps_per_s or self.plan.steps_per_s) / batch, rollout=self.inputs.rollout)

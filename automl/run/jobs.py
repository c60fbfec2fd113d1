"""What one seed job of a run is handed: its trainer's arguments, checkpoint path, deadline and timeout.

The scheduler calls ``JobSpecs.kwargs`` (one seed) or ``batch_kwargs`` (all seeds of a config as one job)
when it submits a job; everything a job needs comes from the run's settings, inputs, plan and budget.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.core.record import Kind
from automl.run.budget import Budget, Throughput
from automl.run.runconfig import RunConfig
from automl.run.scheduler import ConfigRun
from automl.run.inputs import Inputs
from automl.run.plan import Plan


class JobSpecs:
    """The arguments of a run's seed jobs."""

    def __init__(self, cfg: RunConfig, inputs: Inputs, run_dir: Path, budget: Budget, throughput: Throughput,
                 plan: Plan):
        self.cfg, self.inputs, self.run_dir = cfg, inputs, Path(run_dir)
        self.budget, self.throughput = budget, throughput
        self.plan = plan  # replaced when the run adopts its calibrated (or recorded) plan

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
                    eval_episodes=self.plan.eval_episodes,
                    # re-checks (held-out, test) may use the reserve: they run to the hard deadline
                    deadline=self.budget.tuning_deadline if c.kind in Kind.TUNING else self.budget.deadline,
                    device=self.cfg.device,
                    tb_dir=str(run_dir / "tb" / c.config_id / f"{c.kind}_seed{seed}"),
                    save_path=str(run_dir / "models" / c.config_id / f"seed_{seed}") if heldout else None)

    def batch_kwargs(self, c: ConfigRun, seeds: list[int]) -> dict:
        """One job for all ``seeds`` of a config (the torch trainer's seed axis)."""
        kw = self.kwargs(c, seeds[0])
        for key in ("seed", "save_path"):
            kw.pop(key, None)
        run_dir = self.run_dir
        kw.update(seeds=list(seeds), tb_dir=str(run_dir / "tb" / c.config_id / c.kind),
                  checkpoint_path=str(self.checkpoint_path(c, None)), checkpoint_every=self.checkpoint_every(len(seeds)))
        if c.kind == Kind.HELDOUT:
            kw["save_paths"] = [str(run_dir / "models" / c.config_id / f"seed_{s}") for s in seeds]
        return kw

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

    def timeout_s(self, steps: int) -> float:
        """The executor's limit for a job of ``steps`` steps: --timeout-per-trial, else 4x its estimate + 2 min."""
        if self.cfg.timeout_per_trial:
            return self.cfg.timeout_per_trial
        return 4 * self.throughput.seconds_for(steps) + 120.0

"""Calibration: short real jobs of the prior config measure what the plan is made from.

All workers train at once (two jobs on two cores run slower than one alone); each reports its
training steps/s, the time of one evaluation and its fixed cost (env and model build). A budget
that cannot fit one config at the minimum trial length is refused here, in one line.
"""
from __future__ import annotations

from automl.search import space as space_mod
from automl.run.budget import Budget
from automl.core.errors import AutoMLError
from automl.core.values import is_finite_number
from automl.run.runconfig import RunConfig
from automl.run.setup import DEFAULT_EVAL_EPISODES, Calibration, Inputs, minimum_budget_s
from automl.run.state import StateStore


def calibrate(cfg: RunConfig, inputs: Inputs, executor, budget: Budget, store: StateStore) -> Calibration:
    """Measure training steps/s per worker and the cost of one evaluation (one job per worker)."""
    from automl.run import trainers
    from automl.exec.executor import Done, Job

    steps = max(inputs.rollout * 2, 4096)
    episodes = cfg.eval_episodes or DEFAULT_EVAL_EPISODES
    params = {**inputs.spec.fixed, **space_mod.prior_params(inputs.spec)}
    timeout = max(60.0, 0.05 * budget.total_s)
    for i in range(cfg.n_jobs):
        kwargs = dict(params=params, env=inputs.env, seed=inputs.base_seed + i, total_steps=steps,
                      eval_every=steps, eval_episodes=episodes, device=cfg.device)
        executor.submit(Job(job_id=f"calibrate{i}", fn=trainers.job_fn(cfg.trainer), kwargs=kwargs, timeout_s=timeout))
    clock = budget.clock
    rates, evals_s, startups, values, pending, deadline = [], [], [], [], cfg.n_jobs, clock() + timeout + 5
    while pending and clock() < deadline:
        for ev in executor.poll(0.5):
            if not isinstance(ev, Done):
                continue
            pending -= 1
            v = ev.result.value if ev.result.ok else None
            if not (isinstance(v, dict) and v.get("train_s")):
                raise AutoMLError(f"{inputs.space_path}: the prior config failed to train "
                                  f"on {inputs.env!r}: {ev.result.reason}")
            eval_s = v.get("eval_s") or 0.0
            rates.append(v["steps"] / max(v["train_s"], 1e-6))
            evals_s.append(eval_s / max(1, len(v.get("evals") or [1])))
            startups.append(max(1.0, ev.result.wall_s - v["train_s"] - eval_s))
            if is_finite_number(v.get("episode_reward_mean")):
                values.append(float(v["episode_reward_mean"]))
    if pending:
        raise AutoMLError(f"{inputs.space_path}: calibration run of the prior config timed out")
    cal = Calibration(train_steps_per_s=max(1.0, min(rates)), eval_s_each=max(evals_s),
                      episodes=episodes, startup_s=max(startups), floor=min(values) if values else None)
    store.event("calibrated", steps=steps, train_steps_per_s=[round(r) for r in rates],
                eval_s_each=round(cal.eval_s_each, 3), startup_s=round(cal.startup_s, 2))
    return cal


def check_minimum_budget(cfg: RunConfig, inputs: Inputs, budget: Budget, cal: Calibration) -> None:
    """Refuse a budget that cannot fit one config at the minimum trial length (one line)."""
    need_s, floor = minimum_budget_s(cfg, inputs, cal)
    need_s += budget.elapsed_s()  # calibration already spent this much
    if need_s > budget.total_s:
        raise AutoMLError(
            f"--budget-hours: {cfg.budget_hours:.3g} h is too small for {inputs.env}: one config at the "
            f"minimum trial length ({floor:,} steps x {cfg.seeds} seeds) plus its held-out re-check and "
            f"the baseline's needs ~{need_s:.0f} s at the measured {cal.train_steps_per_s:,.0f} steps/s "
            f"per worker (allowed: --budget-hours >= {need_s / 3600 * 1.1:.3f})")

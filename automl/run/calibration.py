"""Calibration: short real jobs of the prior config measure what the plan is made from.

All workers train at once (two jobs on two cores run slower than one alone); each reports its
training steps/s, the time of one evaluation and its fixed cost (env and model build). A budget
that cannot fit one config at the minimum trial length is refused here, in one line.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

from automl.search import space as space_mod
from automl.run.budget import Budget
from automl.core.errors import AutoMLError
from automl.core.values import is_finite_number
from automl.run.inputs import Inputs
from automl.run.plan import DEFAULT_EVAL_EPISODES, Calibration, minimum_budget_s
from automl.run.state import StateStore

if TYPE_CHECKING:  # annotations only
    from automl.run.runconfig import RunConfig


def _run_jobs(cfg: RunConfig, inputs: Inputs, scheduler, budget: Budget, *, steps: int, eval_every: int,
              timeout: float, tag: str) -> list[dict]:
    """One job of the prior config per worker (seeds base+0..), all at once through the run's scheduler;
    their result dicts."""
    from automl.run import trainers
    from automl.exec.executor import Job

    episodes = cfg.eval_episodes or DEFAULT_EVAL_EPISODES
    params = {**inputs.spec.fixed, **space_mod.prior_params(inputs.spec)}
    results: list = []
    for i in range(cfg.n_jobs):
        kwargs = dict(params=params, env=inputs.env, seed=inputs.base_seed + i, total_steps=steps,
                      eval_every=eval_every, eval_episodes=episodes, device=cfg.device)
        scheduler.submit_job(Job(job_id=f"{tag}{i}", fn=trainers.job_fn(cfg.trainer), kwargs=kwargs,
                                 timeout_s=timeout), results.append)
    clock = budget.clock
    out: list = []
    deadline = clock() + timeout + 5
    while len(out) < cfg.n_jobs and clock() < deadline:
        scheduler.step(0.5)
        for r in results[len(out):]:
            v = r.value if r.ok else None
            if not (isinstance(v, dict) and v.get("train_s")):
                raise AutoMLError(f"{inputs.space_path}: the prior config failed to train "
                                  f"on {inputs.env!r}: {r.reason}")
            out.append({**v, "job_wall_s": r.wall_s})
    if len(out) < cfg.n_jobs:
        raise AutoMLError(f"{inputs.space_path}: calibration run of the prior config timed out")
    return out


def calibrate(cfg: RunConfig, inputs: Inputs, scheduler, budget: Budget, store: StateStore) -> Calibration:
    """Measure training steps/s per worker and the cost of one evaluation (one job per worker); with the
    fidelity ladder also the prior's learning curve (``learning_curve``)."""
    steps = max(inputs.rollout * 2, 4096)
    episodes = cfg.eval_episodes or DEFAULT_EVAL_EPISODES
    timeout = max(60.0, 0.05 * budget.total_s)
    rates, evals_s, startups, values = [], [], [], []
    for v in _run_jobs(cfg, inputs, scheduler, budget, steps=steps, eval_every=steps, timeout=timeout, tag="calibrate"):
        eval_s = v.get("eval_s") or 0.0
        rates.append(v["steps"] / max(v["train_s"], 1e-6))
        evals_s.append(eval_s / max(1, len(v.get("evals") or [1])))
        startups.append(max(1.0, v["job_wall_s"] - v["train_s"] - eval_s))
        if is_finite_number(v.get("episode_reward_mean")):
            values.append(float(v["episode_reward_mean"]))
    cal = Calibration(train_steps_per_s=max(1.0, min(rates)), eval_s_each=max(evals_s),
                      episodes=episodes, startup_s=max(startups), floor=min(values) if values else None)
    store.event("calibrated", steps=steps, train_steps_per_s=[round(r) for r in rates],
                eval_s_each=round(cal.eval_s_each, 3), startup_s=round(cal.startup_s, 2))
    if cfg.ladder_on:
        cal = learning_curve(cfg, inputs, scheduler, budget, store, cal)
    return cal


CURVE_SHARE = 0.05   # the learning-curve jobs take at most this share of the budget
CURVE_POINTS = 8     # evaluations along it


def learning_curve(cfg: RunConfig, inputs: Inputs, scheduler, budget: Budget, store: StateStore,
                   cal: Calibration) -> Calibration:
    """Train the prior config a little longer, evaluated CURVE_POINTS times, to find where it has
    measurably left its starting score (the lowest rung of the ladder is never below that point)."""
    from automl.run.ladder import ETA, learned_at
    from automl.train.evaluation import success_se

    r = max(1, inputs.rollout)
    afford = CURVE_SHARE * budget.total_s * cal.train_steps_per_s
    steps = int(min(inputs.default_steps / ETA, afford))
    every = max(r, (steps // CURVE_POINTS // r) * r)
    steps = every * max(2, steps // every)
    timeout = max(60.0, 3 * steps / cal.train_steps_per_s + 30)
    jobs = _run_jobs(cfg, inputs, scheduler, budget, steps=steps, eval_every=every, timeout=timeout, tag="curve")
    points = sorted({int(st) for v in jobs for st, _ in (v.get("evals") or [])})
    curve = []
    for st in points:
        vals = [float(val) for v in jobs for s, val in (v.get("evals") or []) if int(s) == st]
        mean = sum(vals) / len(vals)
        if inputs.true_metric == "success_rate":
            se = success_se(mean, cal.episodes * len(vals))
        elif len(vals) > 1:
            se = (sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)) ** 0.5 / len(vals) ** 0.5
        else:
            se = 0.0
        curve.append([st, round(mean, 4), round(se, 4)])
    at = learned_at(curve)
    # these jobs train ~100x longer than calibration's: their speed is the one to plan with (a 4k-step job
    # measures under a second, and one busy moment made a 20-minute run plan 3x too slow: one rung)
    rate = min(float(v["steps"]) / float(v["train_s"]) for v in jobs)
    store.event("learning_curve", steps=steps, curve=curve, learned_at=at, train_steps_per_s=round(rate))
    return dataclasses.replace(cal, learn_steps=at if at is not None else steps, curve=tuple(map(tuple, curve)),
                               train_steps_per_s=max(1.0, rate))


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

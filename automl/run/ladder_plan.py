"""The run's plan when it climbs a fidelity ladder (``--ladder on``, the staged modes' default).

``make_ladder_plan`` fills the run's ``Plan`` from ``automl.run.ladder.plan_ladder``: the top rung is the
space's ``n_timesteps`` or the longest the budget affords for a few configs once the re-checks at that
length are reserved; ``--trial-steps`` pins it (fewer configs enter; ``check_pinned_top`` refuses it in one
line when not one config fits beside the re-checks at that length); the lowest rung is never below the
point where the prior config measurably left its starting score in calibration. Rungs are whole evaluation intervals, so a
config paused at a rung and continued later evaluates at the same steps as one run of that length.
``--hp-trials`` and ``--reward-generations`` keep their meaning: the configs (and generations) that enter
the ladder; the last tuning phase goes on admitting configs while any fit.

The budget decides which configs are worth sampling: the ladder is planned at the space's mean cost per
step (its network, epoch and minibatch choices) when that yields a ladder that selects (two rungs or more,
a few configs at the top, eta times as many entering); else at the 75th, 50th, 25th, 10th percentile of
the space's costs, else at the prior's. Below the mean, configs dearer than that cost (x1.25) are not
admitted: told to their sampler as rejected, recorded with the reason, never trained. A 10-minute
navigation run thus searches among configs about as cheap as the priors and trains its top rung near
n_timesteps, instead of training two 8x dearer configs at one short length.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

from automl.core.config import to_ppo_setup
from automl.core.errors import AutoMLError
from automl.run.budget import MAX_EVAL_SHARE, MIN_EVAL_EPISODES, Budget
from automl.run.ladder import ETA, MIN_TOP_CONFIGS, CostModel, LadderPlan, plan_ladder, rungs_for
from automl.run.inputs import Inputs
from automl.run.plan import Calibration, Plan, _quotas, make_plan
from automl.search import space as space_mod

if TYPE_CHECKING:
    from automl.run.runconfig import RunConfig

COST_SLACK = 1.25          # a config is admitted up to this much dearer than the cost the ladder is planned at
EVALS_PER_LOWEST_RUNG = 3   # a seed's value is the mean of its last 3 evaluations: all of them in rung 0
COST_PARAMS = ("policy_hidden_layer_sizes", "net_arch", "learning_epochs", "n_epochs", "mini_batches", "batch_size")


def space_costs(inputs: Inputs) -> list[float]:
    """Every combination of the space's cost-relevant choices (network, epochs, minibatches), as the shape
    estimate of its cost per step relative to the prior's (the other parameters at their priors); the
    combinations a random proposal draws with equal chance. Invalid combinations are left out."""
    import itertools

    prior = {**inputs.spec.fixed, **space_mod.prior_params(inputs.spec)}
    cost = CostModel(prior, prior_s_per_step=1.0)
    params = [p for p in inputs.spec.params if p.name in COST_PARAMS and p.choices]
    out = []
    for combo in itertools.product(*(p.choices for p in params)):
        cand = {**prior, **{p.name: c for p, c in zip(params, combo)}}
        try:
            to_ppo_setup(cand)
        except Exception:  # noqa: BLE001 - e.g. more minibatches than the rollout holds
            continue
        out.append(cost.shape_estimate(cand))
    return sorted(out) or [1.0]


def mean_cost(costs: list[float]) -> float:
    """How much slower than the prior a sampled config is expected to be: the mean of ``space_costs``, at
    least 1."""
    return max(sum(costs) / len(costs), 1.0)


def cost_ratios(costs: list[float], typical: float) -> list[float]:
    """The cost ratios a plan is tried at, dearest first: the space's mean (every config admitted), then
    those of its 75th, 50th, 25th and 10th percentiles below the mean, then the prior's own (1)."""
    import numpy as np

    qs = [float(np.percentile(costs, q)) for q in (75, 50, 25, 10)]
    below = sorted({round(max(1.0, q), 3) for q in qs if q < typical} | {1.0}, reverse=True)
    return [typical, *[r for r in below if r < typical]]


def selects(plan) -> bool:
    """Whether a ladder selects: two rungs or more, at least MIN_TOP_CONFIGS configs at the top and eta^2
    configs entering (else it is a few configs trained at one or two lengths)."""
    return (len(plan.rungs) >= 2 and plan.top_configs >= MIN_TOP_CONFIGS
            and plan.entering >= ETA ** 2 and plan.tuning_s > 0)


def _episodes(cfg: RunConfig, cal: Calibration, *, top: int, every: int) -> tuple[int, float]:
    """(episodes per evaluation, evaluation's share of a top-rung job): the user's --eval-episodes, else as
    many as keep evaluation within MAX_EVAL_SHARE (at least MIN_EVAL_EPISODES)."""
    episodes = cfg.eval_episodes or cal.episodes
    per_episode = cal.eval_s_each / max(1, cal.episodes)
    evals, train_s = max(1, top // every), top / max(cal.train_steps_per_s, 1e-9)
    if not cfg.eval_episodes:
        allowed = MAX_EVAL_SHARE / (1 - MAX_EVAL_SHARE) * train_s
        fit = int(allowed / evals / max(per_episode, 1e-9))
        episodes = max(min(MIN_EVAL_EPISODES, episodes), min(episodes, fit))
    eval_s = evals * episodes * per_episode
    return episodes, eval_s / (train_s + eval_s)


def make_ladder_plan(cfg: RunConfig, inputs: Inputs, budget: Budget, cal: Calibration) -> Plan:
    """The plan of a laddered run (see the module docstring)."""
    cycles, hp_trials, population, seed_jobs = _quotas(cfg, inputs)
    total_s = budget.remaining_s()
    rollout = max(1, inputs.rollout) if inputs.default_steps >= inputs.rollout else 1
    train_s_step = 1.0 / max(cal.train_steps_per_s, 1e-9)
    # evaluation adds ~its planned share; the first sketch assumes the full share, then it is recomputed
    s_step = train_s_step / (1 - MAX_EVAL_SHARE)
    costs = space_costs(inputs)
    typical = mean_cost(costs)
    plan: LadderPlan | None = None
    every, ratio = cfg.eval_every or 0, typical  # 0: set from the lowest rung below
    pinned = cfg.trial_steps is not None  # --trial-steps: the top rung is the user's, not the budget's
    # a pinned top in whole trainer rollouts (a job trains whole rollouts), never above what was asked
    top_steps = max(rollout, inputs.default_steps // rollout * rollout) if pinned else inputs.default_steps

    def sketch(steps: int, *, unit: int, ratio: float) -> LadderPlan:
        """plan_ladder for this run at ``steps`` on top (at the current ``s_step``)."""
        return plan_ladder(total_s=total_s, top_steps=steps, seeds=cfg.seeds, n_jobs=cfg.n_jobs,
                           s_per_step=s_step * ratio, baseline_s_per_step=s_step, startup_s=cal.startup_s,
                           rollout=unit, learn_steps=cal.learn_steps, eta=ETA, top_k=cfg.top_k, pinned=pinned)

    for _ in range(2):
        unit = every or rollout
        for ratio in cost_ratios(costs, typical):  # the dearest configs the budget can select among
            plan = sketch(top_steps, unit=unit, ratio=ratio)
            if selects(plan):
                break
        assert plan is not None  # cost_ratios is never empty
        if not cfg.eval_every:
            every = max(rollout, (plan.rungs[0] // EVALS_PER_LOWEST_RUNG // rollout) * rollout)
            low = min(plan.rungs[0], plan.bottom)
            rungs = rungs_for(plan.rungs[-1], low, ETA, every, exact_top=pinned)
            plan = dataclasses.replace(plan, rungs=rungs)
        episodes, share = _episodes(cfg, cal, top=plan.rungs[-1], every=every)
        s_step = train_s_step / (1 - share)
    assert plan is not None
    top = plan.rungs[-1]
    longest = None  # pinned, and not one config fits: the longest pinned top that would (0: none)
    if pinned and plan.entering < 1:
        lo, hi = 0, top // rollout   # in rollouts: lo fits (0: nothing checked yet), hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            fits = sketch(mid * rollout, unit=every or rollout, ratio=ratio).entering >= 1
            lo, hi = (mid, hi) if fits else (lo, mid)
        longest = lo * rollout
    capped = ratio < typical
    ladder = {**plan.to_dict(), "typical_cost": round(ratio, 3), "space_cost": round(typical, 3),
              "cost_cap": round(ratio * COST_SLACK, 3) if capped else None,
              "admissible_share": round(sum(c <= ratio * COST_SLACK for c in costs) / len(costs), 3)
              if capped else 1.0,
              "prior_s_per_step": s_step, "pinned": pinned, "longest_fit": longest, "left_s": round(total_s, 1),
              "calibration_curve": [list(p) for p in cal.curve], "learn_steps": cal.learn_steps}
    return Plan(trial_steps=top, eval_every=every, cycles=cycles, hp_trials=hp_trials, population=population,
                steps_per_s=1.0 / s_step, seed_jobs=seed_jobs, reserve_s=plan.reserve_s, eval_episodes=episodes,
                evals_per_job=max(1, top // every), eval_share=round(share, 4),
                train_steps_per_s=cal.train_steps_per_s, startup_s=cal.startup_s,
                heldout_configs=plan.heldout_configs + 1, shrunk=False, value_floor=cal.floor, ladder=ladder)


def check_pinned_top(cfg: RunConfig, plan: Plan) -> None:
    """Refuse, in one line, a --trial-steps that leaves no time for one config beside its re-checks (at the
    measured speed: the run calls this after calibration; --dry-run only shows the nominal plan)."""
    lad = plan.ladder or {}
    if lad.get("pinned") and int(lad.get("entering") or 0) < 1:
        left = float(lad["left_s"])
        longest = int(lad.get("longest_fit") or 0)
        allowed = (f"--trial-steps <= ~{longest:,} at --budget-hours {cfg.budget_hours:.3g}, or a larger "
                   f"--budget-hours") if longest else "a larger --budget-hours: no top rung fits this one"
        raise AutoMLError(
            f"--trial-steps: {cfg.trial_steps or plan.trial_steps:,} steps do not fit this budget: the re-checks "
            f"of the winner and the baseline at that length need ~{float(lad['reserve_s']):.0f} s of the {left:.0f} "
            f"s left after calibration, too little left for one config to climb the ladder (allowed: {allowed})")


def make_run_plan(cfg: RunConfig, inputs: Inputs, budget: Budget, cal: Calibration) -> Plan:
    """The run's plan: the ladder's (``--ladder on``), else the fixed-length planner's."""
    return make_ladder_plan(cfg, inputs, budget, cal) if cfg.ladder_on else make_plan(cfg, inputs, budget, cal)

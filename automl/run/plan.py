"""A run's plan, made from its inputs, budget and calibration: steps per trial, evaluation, quotas, the
held-out reserve. (The fidelity ladder's plan: ``automl.run.ladder_plan``; the --dry-run summary of
either: ``automl.run.mode_run``.)"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import asdict, dataclass

from automl.run.budget import (MAX_EVAL_SHARE, MAX_RESERVE_FRACTION, MIN_STEP_FRACTION, MIN_TRIAL_STEPS, Budget,
                               Throughput, heldout_reserve_s, plan_evaluation, plan_trial_steps, whole_rollouts)
from automl.run.inputs import Inputs
from automl.search.reward import default_population

if TYPE_CHECKING:
    from automl.run.runconfig import RunConfig

NOMINAL_STEPS_PER_S = {"cartpole": 40_000.0, "navigation": 25_000.0, "acrobot": 12_000.0, "pendulum": 15_000.0,
                       "mountaincar": 15_000.0}
PLANNED_EVALS = 8  # evaluations per seed job at most: eval_every = steps // evals
DEFAULT_EVAL_EPISODES = 32  # episodes per evaluation at most (fewer when evaluation is dear)
TEST_CONFIGS = 2    # the held-out winner and the baseline re-trained on the test seeds
NOMINAL_EVAL_S_PER_EPISODE_STEP = 2e-4  # before anything was measured: ~0.2 ms per eval step


@dataclass(frozen=True)
class Calibration:
    """What short real jobs of the prior config measured, per worker with all workers busy."""

    train_steps_per_s: float  # training only (collection + updates)
    eval_s_each: float        # one evaluation of `episodes` episodes
    episodes: int
    startup_s: float = 2.0
    measured: bool = True
    floor: float | None = None  # the lowest true metric the short runs of the prior reached
    learn_steps: int | None = None  # where the prior's learning curve measurably left its start (the ladder's floor)
    curve: tuple = ()           # the prior's learning curve: (steps, mean true metric, standard error)


@dataclass
class Plan:
    """Steps per seed job, phases and populations, fixed once so that configs stay comparable."""

    trial_steps: int
    eval_every: int
    cycles: int
    hp_trials: int
    population: int
    steps_per_s: float          # effective: training plus the planned evaluations
    seed_jobs: int
    reserve_s: float
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    evals_per_job: int = PLANNED_EVALS
    eval_share: float = 0.0     # estimated share of a job spent evaluating
    train_steps_per_s: float = 0.0
    startup_s: float = 2.0
    heldout_configs: int = 0    # configs the reserve is sized for (top-k + baseline, fewer if few fit)
    shrunk: bool = False        # the budget made trials shorter than the space's default length
    value_floor: float | None = None  # calibration's lowest true metric: a failed seed's value before any result
    ladder: dict | None = None  # the fidelity ladder (automl.run.ladder.LadderPlan.to_dict()); None: --ladder off

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """A recorded plan (older state files lack the newer fields: they keep their defaults)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict:
        """Plain mapping for the state file and the study."""
        return asdict(self)

    def ladder_fields(self) -> dict:
        """The fidelity ladder's fields of a plan that has one."""
        if self.ladder is None:
            raise ValueError("this plan has no fidelity ladder (--ladder off)")
        return self.ladder


def nominal_calibration(cfg: RunConfig, inputs: Inputs) -> Calibration:
    """A guess before anything was measured (dry runs and the first plan only)."""
    episodes = cfg.eval_episodes or DEFAULT_EVAL_EPISODES
    rate = NOMINAL_STEPS_PER_S.get(cfg.env, 10_000.0)
    return Calibration(train_steps_per_s=rate, episodes=episodes, measured=False,
                       eval_s_each=inputs.episode_steps * NOMINAL_EVAL_S_PER_EPISODE_STEP *
                       (1 if inputs.is_task else episodes))


def make_plan(cfg: RunConfig, inputs: Inputs, budget: Budget, cal: Calibration) -> Plan:
    """Steps per trial and the evaluation schedule from the budget, the requested trials and
    measured throughput: evaluation is held to MAX_EVAL_SHARE of a job (fewer evaluations,
    then fewer episodes), trials shrink (never grow) to fit, and the held-out reserve is
    sized for the configs that will be there to re-check. With the fidelity ladder (``--ladder on``) the
    plan is the ladder's (automl.run.ladder_plan.make_run_plan chooses)."""
    cycles, hp_trials, population, seed_jobs = _quotas(cfg, inputs)
    full_population = population
    total_s = budget.remaining_s()
    episodes = cfg.eval_episodes or cal.episodes
    steps, ev, eff = inputs.default_steps, None, cal.train_steps_per_s * (1 - MAX_EVAL_SHARE)
    heldout_configs = cfg.top_k + 1
    for _ in range(6):  # steps, evaluation cost, reserve and population depend on each other
        before = (population, heldout_configs)
        heldout_jobs = (heldout_configs + TEST_CONFIGS) * cfg.seeds
        share = seed_jobs / max(1, seed_jobs + heldout_jobs)
        tp = Throughput(steps_per_s=eff, startup_s=cal.startup_s)
        steps = plan_trial_steps(default_steps=inputs.default_steps, budget_s=total_s * share,
                                 seed_jobs=max(1, seed_jobs), n_jobs=cfg.n_jobs, throughput=tp,
                                 rollout=_rollout(inputs))
        ev = _eval_plan(cfg, inputs, cal, steps, episodes)
        eff = steps / (steps / max(cal.train_steps_per_s, 1e-9) + ev.eval_s)
        tp = Throughput(steps_per_s=eff, startup_s=cal.startup_s)
        heldout_configs = _heldout_configs(cfg, total_s, steps, tp)
        if full_population and not cfg.reward_population:
            # When trials had to shrink, shrink the reward population too (not below 4).
            population = max(4, min(full_population, int(full_population * steps / inputs.default_steps) + 1))
            cycles, hp_trials, population, seed_jobs = _quotas(cfg, inputs, population)
        if (population, heldout_configs) == before:
            break
    assert ev is not None  # the loop runs at least once
    reserve = heldout_reserve_s(configs=heldout_configs + TEST_CONFIGS, seeds=cfg.seeds, steps=steps,
                                n_jobs=cfg.n_jobs, throughput=tp)
    eval_every = cfg.eval_every or _eval_every(steps, ev.evals, inputs.rollout)
    full = whole_rollouts(inputs.default_steps, _rollout(inputs))
    return Plan(shrunk=steps < full, trial_steps=steps, eval_every=min(eval_every, steps), cycles=cycles,
                hp_trials=hp_trials, population=population, steps_per_s=eff,
                seed_jobs=seed_jobs, reserve_s=reserve, eval_episodes=ev.episodes,
                evals_per_job=ev.evals, eval_share=round(ev.share, 4),
                train_steps_per_s=cal.train_steps_per_s, startup_s=cal.startup_s,
                heldout_configs=heldout_configs, value_floor=cal.floor)


def _rollout(inputs: Inputs) -> int:
    """Trials are whole rollouts, unless the default length is shorter than one."""
    return max(1, inputs.rollout) if inputs.default_steps >= inputs.rollout else 1


def _quotas(cfg: RunConfig, inputs: Inputs, population: int | None = None) -> tuple[int, int, int, int]:
    """(cycles, HP trials per phase, reward population, tuning seed jobs) as the mode says
    (``automl.run.modes``: its cycles and its tuning configs)."""
    n_weights = sum(1 for t in inputs.terms.values() if t["low"] < t["high"])
    if population is None:
        population = cfg.reward_population or default_population(n_weights)
    mode = cfg.run_mode
    configs = mode.tuning_configs(cfg, bool(inputs.terms), population)
    return mode.cycles(cfg), cfg.hp_trials, population, configs * cfg.seeds


def _eval_plan(cfg: RunConfig, inputs: Inputs, cal: Calibration, steps: int, episodes: int):
    """The evaluation schedule for `steps`; a user's --eval-every/--eval-episodes are kept as given."""
    each = cal.eval_s_each * episodes / max(1, cal.episodes)
    given = bool(cfg.eval_every or cfg.eval_episodes)
    max_evals = max(1, -(-steps // cfg.eval_every)) if cfg.eval_every else PLANNED_EVALS
    return plan_evaluation(steps=steps, train_steps_per_s=cal.train_steps_per_s, eval_s_each=each,
                           episodes=episodes, max_evals=max_evals,
                           max_share=1.0 if given else MAX_EVAL_SHARE)


def _eval_every(steps: int, evals: int, rollout: int) -> int:
    """Steps between evaluations for `evals` evaluations per job, in whole rollouts."""
    r = max(1, rollout)
    return max(r, (steps // max(1, evals) // r) * r)


def _heldout_configs(cfg: RunConfig, total_s: float, steps: int, tp: Throughput) -> int:
    """Top-k + baseline, or fewer tuned configs when fewer than top-k can be trained at all."""
    job_s = tp.seconds_for(steps)
    config_s = -(-cfg.seeds // cfg.n_jobs) * job_s
    fit = int(total_s * (1 - MAX_RESERVE_FRACTION) // max(config_s, 1e-9))
    return max(1, min(cfg.top_k, fit)) + 1


def minimum_budget_s(cfg: RunConfig, inputs: Inputs, cal: Calibration) -> tuple[float, int]:
    """(seconds, steps): one tuning config at the minimum trial length plus the held-out
    re-check of it and the baseline, at the measured throughput."""
    floor = min(inputs.default_steps, max(MIN_TRIAL_STEPS, int(inputs.default_steps * MIN_STEP_FRACTION)))
    r = _rollout(inputs)
    floor = max(r, -(-floor // r) * r)
    ev = _eval_plan(cfg, inputs, cal, floor, cfg.eval_episodes or cal.episodes)
    tp = Throughput(steps_per_s=floor / (floor / max(cal.train_steps_per_s, 1e-9) + ev.eval_s),
                    startup_s=cal.startup_s)
    waves = -(-cfg.seeds // cfg.n_jobs)
    return 3 * waves * tp.seconds_for(floor), floor

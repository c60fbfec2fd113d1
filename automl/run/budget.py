"""Wall-clock budget arithmetic: deadlines, the held-out reserve, steps per trial, admission.

Pure and clock-injected so the scheduling rules are tested against a fake clock.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

# A trial is never shrunk below this fraction of its default length, nor below
# MIN_TRIAL_STEPS: a few PPO updates are the least that says anything about a config.
MIN_STEP_FRACTION = 0.05
MIN_TRIAL_STEPS = 2_000
# Share of the budget set aside for the final held-out re-evaluation (at most).
MAX_RESERVE_FRACTION = 0.35
MAX_ESSENTIAL_FRACTION = 0.6  # ... but the winner's and the baseline's re-check may take up to this
# Safety factor on time estimates: process start, evaluation and noise. Before full-length
# jobs were seen the estimate rests on short calibration jobs; after MEASURED_AFTER of them
# it is their median rate, and a smaller margin keeps the last configs of a run admitted.
ESTIMATE_MARGIN = 1.15
MEASURED_MARGIN = 1.05
MEASURED_AFTER = 2
# Evaluation may take at most this share of a seed job's time (scaled to the episode length).
MAX_EVAL_SHARE = 0.20
MIN_EVALS = 2          # fewer evaluations first; below this, fewer episodes per evaluation
MIN_EVAL_EPISODES = 8


@dataclass
class Throughput:
    """Running estimate of training steps per second per worker, plus fixed cost per seed job."""

    steps_per_s: float
    startup_s: float = 2.0
    samples: list[float] = field(default_factory=list)

    def observe(self, steps: int, wall_s: float) -> None:
        """Fold in one finished seed job (steps trained in wall_s seconds, startup included)."""
        if steps > 0 and wall_s > self.startup_s:
            self.samples.append(steps / (wall_s - self.startup_s))
            recent = self.samples[-8:]
            self.steps_per_s = sorted(recent)[len(recent) // 2]

    @property
    def margin(self) -> float:
        """The safety factor in force: smaller once full-length jobs were measured."""
        return MEASURED_MARGIN if len(self.samples) >= MEASURED_AFTER else ESTIMATE_MARGIN

    def seconds_for(self, steps: int) -> float:
        """Estimated wall-clock seconds of one seed job of `steps` steps."""
        return (self.startup_s + steps / max(self.steps_per_s, 1e-9)) * self.margin


class Budget:
    """One run's deadline, reserve for held-out evaluation and the admission rule."""

    def __init__(self, hours: float, *, elapsed_before_s: float = 0.0,
                 clock: Callable[[], float] = time.time):
        self.clock = clock
        self.total_s = hours * 3600.0
        self.elapsed_before_s = elapsed_before_s
        self.started = clock()
        self.deadline = self.started + self.total_s - elapsed_before_s
        self.reserve_s = 0.0

    @property
    def tuning_deadline(self) -> float:
        """Last instant a tuning job may still be running; the rest is the held-out reserve."""
        return self.deadline - self.reserve_s

    def elapsed_s(self) -> float:
        """Budget used so far, earlier (resumed) runs included."""
        return self.elapsed_before_s + (self.clock() - self.started)

    def remaining_s(self) -> float:
        """Seconds left until the hard deadline (never negative)."""
        return max(0.0, self.deadline - self.clock())

    def set_reserve(self, seconds: float, *, essential_s: float = 0.0) -> None:
        """Reserve time for the final re-evaluation, capped to a share of the budget; the cap
        rises to `essential_s` (the winner and the baseline), up to MAX_ESSENTIAL_FRACTION."""
        cap = max(MAX_RESERVE_FRACTION * self.total_s, min(essential_s, MAX_ESSENTIAL_FRACTION * self.total_s))
        self.reserve_s = min(max(0.0, seconds), cap)

    def can_start(self, estimate_s: float, *, heldout: bool = False) -> bool:
        """A job starts only if its estimate ends before its phase's deadline."""
        limit = self.deadline if heldout else self.tuning_deadline
        return self.clock() + estimate_s <= limit

    def exhausted(self) -> bool:
        """True once the hard deadline has passed."""
        return self.clock() >= self.deadline

    def tuning_over(self) -> bool:
        """True once the tuning deadline has passed (only the held-out reserve is left)."""
        return self.clock() >= self.tuning_deadline


def plan_trial_steps(*, default_steps: int, budget_s: float, seed_jobs: int, n_jobs: int,
                     throughput: Throughput, rollout: int = 1) -> int:
    """Steps per seed job so that `seed_jobs` jobs on `n_jobs` workers fit in `budget_s`.

    Starts from the default length and shrinks (never grows) to fit, down to a floor;
    the result is a whole number of rollouts.
    """
    floor = max(MIN_TRIAL_STEPS, int(default_steps * MIN_STEP_FRACTION))
    waves = max(1, math.ceil(seed_jobs / max(1, n_jobs)))
    per_job_s = budget_s / waves / ESTIMATE_MARGIN - throughput.startup_s
    fit = int(per_job_s * throughput.steps_per_s) if per_job_s > 0 else 0
    steps = max(min(default_steps, fit), min(floor, default_steps))
    return whole_rollouts(steps, rollout)


def whole_rollouts(steps: int, rollout: int) -> int:
    """`steps` rounded down to whole rollouts, at least one rollout."""
    rollout = max(1, int(rollout))
    return max(rollout, (steps // rollout) * rollout)


@dataclass(frozen=True)
class EvalPlan:
    """How often and how long a seed job evaluates, and the share of its time that costs."""

    evals: int       # evaluations per seed job (the last one at the end of training)
    episodes: int    # episodes per evaluation
    eval_s: float    # estimated seconds of all evaluations of one job
    share: float     # eval_s / (train_s + eval_s)


def plan_evaluation(*, steps: int, train_steps_per_s: float, eval_s_each: float, episodes: int,
                    max_evals: int, max_share: float = MAX_EVAL_SHARE) -> EvalPlan:
    """Fewest cuts that keep evaluation within `max_share` of a job: fewer evaluations first
    (down to MIN_EVALS), then fewer episodes per evaluation (down to MIN_EVAL_EPISODES).

    `eval_s_each` is the measured time of one evaluation of `episodes` episodes; its cost is
    taken as proportional to the episode count (exact for gymnasium's one-env-per-episode
    DummyVecEnv, conservative-to-neutral for the batched tasks).
    """
    train_s = steps / max(train_steps_per_s, 1e-9)
    if max_share >= 1.0:  # the user chose the schedule: keep it, report what it costs
        total = max_evals * eval_s_each
        return EvalPlan(evals=max_evals, episodes=episodes, eval_s=total,
                        share=total / max(1e-9, train_s + total))
    allowed = max_share / (1.0 - max_share) * train_s
    each = max(eval_s_each, 1e-9)
    evals = max(1, min(max_evals, int(allowed // each)))
    eps = episodes
    if evals < min(MIN_EVALS, max_evals) or evals * each > allowed:
        evals = min(MIN_EVALS, max_evals)
        per_episode = each / max(1, episodes)
        eps = int(allowed / evals // per_episode)
        eps = max(min(MIN_EVAL_EPISODES, episodes), min(episodes, eps))
        each = per_episode * eps
        if evals * each > allowed:  # even the floor is too dear: one evaluation, at the end
            evals = 1
    total = evals * each
    return EvalPlan(evals=evals, episodes=eps, eval_s=total, share=total / max(1e-9, train_s + total))


def heldout_reserve_s(*, configs: int, seeds: int, steps: int, n_jobs: int,
                      throughput: Throughput) -> float:
    """Time needed to re-train `configs` configs on `seeds` held-out seeds each."""
    waves = math.ceil(configs * seeds / max(1, n_jobs))
    return waves * throughput.seconds_for(steps)

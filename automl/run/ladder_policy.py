"""What the next free worker does on a fidelity ladder: promote, admit a new config, or nothing.

The policy owns the time side of the ladder at run time (pure: the caller passes the time left):
* a job is started only if its estimate (``CostModel``: the config's own measured speed, else its shape
  corrected by what was measured) fits, together with the work already in flight, before the tuning
  deadline = the end of the budget minus the re-check reserve;
* the reserve is sized for what will actually be re-checked, from the configs themselves: the best
  ``top_k`` configs (highest rung first, then value) re-trained at the top rung's length at their measured
  speed on the held-out seeds plus the baseline, and the winner and the baseline on the test seeds. It is
  recomputed at every decision, so time a slow candidate no longer needs goes back to tuning at once;
* promotions come first (ASHA: highest rung first); a new config enters the lowest rung only when no
  promotion is due; tuning is over only when neither fits.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping

from automl.run.ladder import CostModel, makespan
from automl.search.ladder import Promotions


RESERVE_SHARE = 0.35   # the held-out re-check takes fewer configs (down to the leader) before the reserve passes this
RECHECK_MARGIN = 1.05  # re-checks run at measured speeds (the baseline's from calibration)
SET_ASIDE_GAP = 1.5    # a leader is set aside only when this much slower per step than the typical config


@dataclass(frozen=True)
class Action:
    """``kind``: 'promote' (``config_id`` on to ``rung``), 'admit' (a new config at rung 0) or 'wait'
    (a job may fit once running work ends) or 'over' (nothing admissible fits any more)."""

    kind: str
    config_id: str | None = None
    rung: int = 0

    def promoted(self) -> str:
        """The config a 'promote' action moves up."""
        if self.config_id is None:
            raise ValueError(f"a {self.kind!r} action names no config")
        return self.config_id
    est_s: float = 0.0     # worker-seconds of the job (all its seeds)


class LadderPolicy:
    """Admission, promotion and the re-check reserve of one ladder."""

    def __init__(self, promotions: Promotions, cost: CostModel, *, seeds: int, n_jobs: int,
                 recheck_seeds: int | None = None, top_k: int = 3, startup_s: float = 2.0, margin: float = 1.1,
                 baseline_params: Mapping | None = None):
        self.promotions, self.cost = promotions, cost
        self.seeds, self.n_jobs = seeds, n_jobs
        self.recheck_seeds, self.top_k = recheck_seeds or seeds, top_k
        self.startup_s, self.margin = startup_s, margin
        self.baseline = dict(baseline_params if baseline_params is not None else cost.prior_params)
        self.params: dict[str, Mapping] = {}   # config -> its train params (for its cost)
        self.heldout_n = top_k                 # tuned configs the held-out re-check takes (lowered to fit)
        self.typical_ratio = 1.0               # a sampled config's expected cost per step over the prior's
        self.budget_s = 0.0                    # the run's whole budget (the reserve's cap is a share of it)
        self.cost_cap: float | None = None     # the dearest shape estimate admitted (x the prior's), None: any
        self.set_aside: set[str] = set()       # leaders too slow to reach the top in time (``_set_aside_leader``)
        self.pinned = False                    # --trial-steps: the top rung is never dropped

    # -- estimates ---------------------------------------------------------------------------------
    def climb_s(self, params: Mapping, config_id: str | None, rung: int) -> float:
        """Worker-seconds to train ``config_id`` (all seeds) from the rung below on to ``rung``."""
        steps = self.promotions.ladder.extra_steps(rung)
        return self.seeds * (self.startup_s + steps * self.cost.s_per_step(params, config_id)) * self.margin

    def typical_s_per_step(self) -> float:
        """A config the searches will propose: the median measured config, else the space's expected cost."""
        if self.cost.measured:
            return statistics.median(self.cost.measured.values())
        return self.cost.prior_s_per_step * self.typical_ratio

    def typical_climb_s(self, rung: int) -> float:
        """Worker-seconds of a typical config's climb to ``rung``."""
        steps = self.promotions.ladder.extra_steps(rung)
        return self.seeds * (self.startup_s + steps * self.typical_s_per_step()) * self.margin

    def capacity(self, *, left_s: float, in_flight_s: float) -> float:
        """How many more typical configs can enter and climb as ASHA promotes them (1/eta of each rung
        goes on), in the tuning time left after the work in flight."""
        tuning = self.n_jobs * (left_s - self.reserve_s()) - in_flight_s
        eta = self.promotions.ladder.eta
        per = sum(self.typical_climb_s(k) / eta ** k for k in range(self.promotions.ladder.top + 1))
        return max(0.0, tuning / per)

    def _recheck_job_s(self, params: Mapping, config_id: str | None) -> float:
        top = self.promotions.ladder.rungs[-1]
        return (self.startup_s + top * self.cost.s_per_step(params, config_id)) * RECHECK_MARGIN

    def _baseline_job_s(self) -> float:
        """The baseline (the priors) at the top rung's length, at its measured speed (``baseline_s_per_step``)."""
        return (self.startup_s + self.promotions.ladder.rungs[-1] * self.baseline_s_per_step()) * RECHECK_MARGIN

    def baseline_s_per_step(self) -> float:
        """The baseline's seconds per step: the median measured on the ladder over the configs with its
        hyperparameters (its reward weights cost nothing), else calibration's. Calibration's two short jobs
        err by up to a third on this machine; a config's climbs measure hundreds of thousands of steps."""
        same = [self.cost.measured[c] for c, p in self.params.items()
                if c in self.cost.measured and _same_params(p, self.baseline)]
        return statistics.median(same) if same else self.cost.prior_s_per_step

    def candidates(self) -> list[str]:
        """The configs the held-out re-check would take now: highest rung first, then value."""
        p = self.promotions
        order = []
        for rung in range(p.ladder.top, -1, -1):
            order += [c for c in p.ranked(rung) if p.rung_of(c) == rung and p.value(c, rung) is not None
                      and c not in self.set_aside]
        return order[: self.heldout_n]

    def reserve_s(self, joining: str | None = None, *, typical: bool = False) -> float:
        """Wall seconds the re-checks need at the top rung's length, for what will be re-checked: the
        held-out phase (the candidates and the baseline on the held-out seeds), then the test phase (the
        leader and the baseline on the test seeds), each seed job list-scheduled on the workers.
        ``joining``: a config about to be promoted, counted among the candidates and as the leader if it is
        the dearer (a promotion may make it the one re-checked). ``typical``: as if the candidates were
        configs of the typical measured cost."""
        cands = [] if typical else self.candidates()
        if joining is not None:
            cands = [joining, *[c for c in cands if c != joining]][: self.heldout_n]
        jobs = [self._recheck_job_s(self.params.get(c, self.baseline), c) for c in cands]
        if not jobs:  # nothing finished yet (or ``typical``): plan for top_k configs of the typical cost
            top = self.promotions.ladder.rungs[-1]
            jobs = [(self.startup_s + top * self.typical_s_per_step()) * RECHECK_MARGIN] * self.heldout_n
        base = self._baseline_job_s()
        n = self.recheck_seeds
        heldout = makespan([j for j in jobs for _ in range(n)] + [base] * n, self.n_jobs)
        lead = max(jobs[:2]) if joining is not None else jobs[0]  # the joining config or the leader wins
        return heldout + makespan([lead] * n + [base] * n, self.n_jobs)

    def _top_reachable(self, left_s: float) -> bool:
        """Whether the best config so far (or a typical one) can still climb to the top rung and be
        re-checked there before the end: its remaining climbs, seed jobs spread over the workers, plus the
        reserve."""
        p = self.promotions
        cands = self.candidates()
        c = cands[0] if cands else None
        params = self.params.get(c, self.baseline) if c else self.baseline
        done = p.rung_of(c) if c else None
        start = done + 1 if done is not None else 0
        waves = math.ceil(self.seeds / self.n_jobs)
        climb = sum(self.climb_s(params, c, k) / self.seeds * waves for k in range(start, p.ladder.top + 1))
        return climb + self.reserve_s() <= left_s

    def _typical_reachable(self, left_s: float) -> bool:
        """Whether a config of the typical measured speed entering the lowest rung now can climb to the top
        rung and be re-checked there before the end (from the lowest rung: a set-aside leader keeps its place
        among those promotable from it, so the next promotion may wait for more configs to finish it)."""
        if not self.cost.measured:
            return False
        waves = math.ceil(self.seeds / self.n_jobs)
        top = self.promotions.ladder.top
        climb = sum(self.typical_climb_s(k) / self.seeds * waves for k in range(0, top + 1))
        return climb + self.reserve_s(typical=True) <= left_s

    def _set_aside_leader(self, left_s: float) -> str | None:
        """Set the leader aside (never promoted, not a re-check candidate) when it is too slow to reach the top
        rung and be re-checked in time while a config of the typical measured speed still can: one slow config
        (its shape's estimate too low) leading a lower rung does not cost the ladder its top rung. Only a
        leader that measured at least SET_ASIDE_GAP x the typical config's seconds per step, that finished a
        rung below the top and is not climbing now. Returns the config set aside, or None."""
        cands = self.candidates()
        if not cands:
            return None
        c, p = cands[0], self.promotions
        rung = p.rung_of(c) or 0
        if rung >= p.ladder.top or c in p.promoted.get(rung, []) or c not in self.cost.measured:
            return None
        if self.cost.measured[c] < SET_ASIDE_GAP * self.typical_s_per_step() or not self._typical_reachable(left_s):
            return None
        self.set_aside.add(c)
        return c

    def adapt(self, left_s: float) -> list[str]:
        """Fit the ladder's end to the time left: while the top rung cannot be reached and re-checked in
        time, take fewer configs into the held-out re-check (down to one), then set a leader aside that is
        slower than the typical config (``_set_aside_leader``), then drop the top rung (only while no config
        finished it or climbs to it, and never when --trial-steps pinned it). Returns what changed, for the
        run's events."""
        changes = []
        while self.heldout_n > 1 and self.budget_s and self.reserve_s() > RESERVE_SHARE * self.budget_s:
            self.heldout_n -= 1  # re-checking fewer configs leaves tuning its time
            changes.append(f"held-out re-check of {self.heldout_n} configs")
        while not self._top_reachable(left_s):
            if self.heldout_n > 1:
                self.heldout_n -= 1
                changes.append(f"held-out re-check of {self.heldout_n} configs")
            elif (slow := self._set_aside_leader(left_s)) is not None:
                changes.append(f"{slow} set aside: too slow to reach the top rung and be re-checked in time")
            elif not self.pinned and self.promotions.lower_top():
                self.heldout_n = self.top_k
                self.set_aside.clear()  # they finished what is now the top rung, or a rung below it
                changes.append(f"top rung {self.promotions.ladder.rungs[-1]} steps")
            else:
                break
        return changes

    # -- decisions ---------------------------------------------------------------------------------
    def _fits(self, job_s: float, *, left_s: float, in_flight_s: float, joining: str | None = None) -> bool:
        """A job fits when it and the work in flight finish on the workers before the tuning deadline,
        and one of its seed jobs alone does (seeds cannot be split). ``joining``: see ``reserve_s``."""
        tuning_left = left_s - self.reserve_s(joining)
        per_seed = job_s / max(1, self.seeds)
        return per_seed <= tuning_left and in_flight_s + job_s <= self.n_jobs * tuning_left

    def next_action(self, *, left_s: float, in_flight_s: float, typical_params: Mapping | None = None,
                    admit_first: bool = False) -> Action:
        """The next job, given ``left_s`` wall seconds until the budget's end and ``in_flight_s``
        worker-seconds of work still to do in running jobs. ``typical_params``: a config like the ones the
        sampler proposes (default: the prior), for the admission estimate before one is sampled.
        ``admit_first``: a new config goes before the promotions when it fits (a planned stage's first
        config: promotions of earlier stages never starve a stage out of the run)."""
        self.adapt(left_s)
        est = self.climb_s(typical_params, None, 0) if typical_params else self.typical_climb_s(0)
        if admit_first and self._fits(est, left_s=left_s, in_flight_s=in_flight_s):
            return Action("admit", None, 0, est)

        def fits(config_id: str, rung: int) -> bool:
            if config_id in self.set_aside:
                return False
            return self._fits(self.climb_s(self.params.get(config_id, self.baseline), config_id, rung),
                              left_s=left_s, in_flight_s=in_flight_s, joining=config_id)

        got = self.promotions.next_promotion(fits)
        if got is not None:
            c, rung = got
            return Action("promote", c, rung, self.climb_s(self.params.get(c, self.baseline), c, rung))
        if self._fits(est, left_s=left_s, in_flight_s=in_flight_s):
            return Action("admit", None, 0, est)
        # nothing fits now; once running jobs end, their candidates may be promotable or the reserve smaller
        return Action("wait" if in_flight_s > 0 else "over")

    def admits(self, config_id: str, params: Mapping, *, left_s: float, in_flight_s: float) -> bool:
        """Whether the sampled config ``config_id`` fits at the lowest rung (its own shape's estimate)."""
        return self._fits(self.climb_s(params, None, 0), left_s=left_s, in_flight_s=in_flight_s)

    def too_dear(self, params: Mapping) -> bool:
        """Whether a sampled config is dearer per step (its shape's estimate) than the plan's cost cap."""
        ratio = self.cost.shape_estimate(params) / self.cost.prior_s_per_step
        return self.cost_cap is not None and ratio > self.cost_cap

    def register(self, config_id: str, params: Mapping) -> None:
        """``config_id`` enters the ladder with ``params`` (its cost is estimated from them)."""
        self.params[config_id] = dict(params)

    def finished(self, config_id: str, rung: int, value: float | None, *, steps: int, train_s: float) -> None:
        """``config_id`` finished ``rung`` with ``value`` after ``train_s`` worker-seconds for ``steps``
        seed-steps (the climb's, not the whole history's): both the ladder and the cost model learn."""
        self.promotions.record(config_id, rung, value)
        if steps > 0 and math.isfinite(train_s):
            self.cost.observe(config_id, self.params.get(config_id, self.baseline), steps, train_s)


def _same_params(a: Mapping, b: Mapping) -> bool:
    """Whether two configs' train params are equal (tuples and lists alike)."""
    def norm(v):
        return [norm(x) for x in v] if isinstance(v, (list, tuple)) else v
    return set(a) == set(b) and all(norm(a[k]) == norm(b[k]) for k in a)

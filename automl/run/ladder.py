"""Planning the fidelity ladder, and what a config costs: the time side of multi-fidelity search.

``plan_ladder`` turns the budget, the calibration and the space's ``n_timesteps`` into rungs (lowest,
eta, top), how many configs enter and the re-check reserve at the top rung's length. ``CostModel``
estimates a config's seconds per step from its own shape (network size, epochs, minibatches) relative to
the calibrated prior, and is corrected by what configs measured. ``learned_at`` reads calibration's
learning curve: the first step at which the prior config has measurably left its starting score (the
lowest rung is never below it: no rung where nothing has learned yet).

Pure: no clock, no I/O. The promotion rule itself is ``automl.search.ladder``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from automl.core.config import to_ppo_setup

ETA = 3
MIN_TOP_CONFIGS = 2        # the top rung must be affordable for at least this many configs
MIN_BOTTOM_STEPS = 2_000   # a few PPO updates: the least that says anything about a config
MIN_TUNING_SHARE = 0.5     # the re-checks never take more than half the budget: the top rung shrinks first
DEFAULT_ENV_SHARE = 0.25   # share of the prior's step time that does not scale with the network
# (navigation, 2-core CPU: [256,128,64] ran 3.5x and [512,256,128] 11-16x the [128,64] prior; a 25% fixed
# share and the rest proportional to multiply-adds x (1 + 3 x epochs) predicts 3.5x and 13.5x)
MINIBATCH_OVERHEAD_MACS = 5e6  # one optimizer step's fixed cost, in multiply-add equivalents


def _layers(setup) -> tuple[list[int], list[int]]:
    arch = (setup.ppo_kwargs.get("policy_kwargs") or {}).get("net_arch") or {"pi": [64, 64], "vf": [64, 64]}
    if isinstance(arch, list):
        return list(arch), list(arch)
    return list(arch.get("pi", [64, 64])), list(arch.get("vf", [64, 64]))


def network_cost(params: Mapping) -> float:
    """Multiply-adds per env step of a config's training, up to a constant: the hidden layers of the actor
    and the critic, once in collection and (forward + backward ~ 3x) per epoch in the update, plus each
    minibatch's fixed optimizer cost spread over its samples."""
    setup = to_ppo_setup(params)
    macs = 0.0
    for layers in _layers(setup):
        macs += sum(a * b for a, b in zip(layers, layers[1:])) + 16 * (layers[0] + layers[-1])
    epochs = int(setup.ppo_kwargs.get("n_epochs", 10))
    batch = max(1, int(setup.ppo_kwargs.get("batch_size", 64)))
    return macs * (1 + 3 * epochs) + MINIBATCH_OVERHEAD_MACS * epochs / batch


@dataclass
class CostModel:
    """Seconds per (seed-)step of a config, from its shape relative to the calibrated prior.

    ``estimate`` = prior's s/step x (env_share + (1 - env_share) x network_cost(c) / network_cost(prior)),
    times the median measured/estimated ratio over the configs measured so far; a config that was measured
    (``observe``) is estimated from its own measurement.
    """

    prior_params: Mapping
    prior_s_per_step: float
    env_share: float = DEFAULT_ENV_SHARE
    measured: dict[str, float] = field(default_factory=dict)     # config -> measured s/step
    ratios: dict[str, float] = field(default_factory=dict)       # config -> measured / shape estimate

    def __post_init__(self):
        self._prior_cost = network_cost(self.prior_params)

    def shape_estimate(self, params: Mapping) -> float:
        """Seconds per step from the shape alone (no correction)."""
        rel = self.env_share + (1 - self.env_share) * network_cost(params) / self._prior_cost
        return self.prior_s_per_step * rel

    def correction(self) -> float:
        """Median measured/estimated ratio of the configs measured so far (1 before any)."""
        return statistics.median(self.ratios.values()) if self.ratios else 1.0

    def s_per_step(self, params: Mapping, config_id: str | None = None) -> float:
        """The estimate admission and promotion use."""
        if config_id is not None and config_id in self.measured:
            return self.measured[config_id]
        return self.shape_estimate(params) * self.correction()

    def observe(self, config_id: str, params: Mapping, steps: int, train_s: float) -> None:
        """``config_id`` trained ``steps`` seed-steps in ``train_s`` worker-seconds (one rung of it)."""
        if steps <= 0 or train_s <= 0:
            return
        rate = train_s / steps
        self.measured[config_id] = rate
        self.ratios[config_id] = rate / self.shape_estimate(params)

    def to_dict(self) -> dict:
        return {"prior_s_per_step": self.prior_s_per_step, "env_share": self.env_share,
                "measured": dict(self.measured), "ratios": dict(self.ratios)}


def learned_at(curve: Sequence[Sequence[float]], *, z: float = 2.0) -> int | None:
    """The first step at which a learning curve has measurably left its starting score.

    ``curve``: [[steps, value, standard error], ...] in step order, the first point the start (e.g. an
    evaluation at or near step 0). A point counts once its value exceeds the start's by ``z`` combined
    standard errors (and by something at all when both errors are 0). None: it never did.
    """
    if len(curve) < 2:
        return None
    _, v0, se0 = curve[0]
    for steps, v, se in curve[1:]:
        margin = z * math.hypot(float(se0), float(se))
        if float(v) - float(v0) > max(margin, 1e-12):
            return int(steps)
    return None


@dataclass(frozen=True)
class LadderPlan:
    """The ladder a budget yields: rungs, how many configs enter and reach the top, and what it costs."""

    rungs: tuple[int, ...]
    eta: int
    entering: int             # configs the tuning time admits at the lowest rung (at the prior's speed)
    top_configs: int          # of them, how many reach the top rung
    rung_s: tuple[float, ...] # worker-seconds of one config (all its seeds) to climb to each rung from the one below
    tuning_s: float           # wall seconds for tuning
    reserve_s: float          # wall seconds for the re-checks at the top rung's length
    heldout_configs: int      # tuned configs re-checked on held-out seeds (the baseline comes on top)
    bottom: int               # the least the lowest rung may be (calibration's learning point, or the floor)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rungs"], d["rung_s"] = list(self.rungs), [round(s, 1) for s in self.rung_s]
        d["tuning_s"], d["reserve_s"] = round(self.tuning_s, 1), round(self.reserve_s, 1)
        return d


def _round(steps: float, rollout: int) -> int:
    r = max(1, int(rollout))
    return max(r, int(round(steps / r)) * r)


def rungs_for(top: int, bottom: int, eta: int, rollout: int, *, exact_top: bool = False) -> tuple[int, ...]:
    """top, top/eta, top/eta^2, ... down to no lower than ``bottom``, lowest first, in whole rollouts.
    ``exact_top`` (a pinned --trial-steps, already in whole trainer rollouts): the top is ``top`` itself, only
    the rungs below it (where climbs pause) in whole ``rollout`` units."""
    k = 0
    while top / eta ** (k + 1) >= bottom:
        k += 1
    out = {_round(top / eta ** i, rollout) for i in range(1 if exact_top else 0, k + 1)}
    if exact_top:
        out = {r for r in out if r < top} | {int(top)}
    return tuple(sorted(out))


def _ladder_cost(rungs: Sequence[int], eta: int, seeds: int, s_per_step: float, startup_s: float) -> list[float]:
    """Worker-seconds of one config (all seeds) per rung: only the extra steps (continuation)."""
    out, below = [], 0
    for r in rungs:
        out.append(seeds * (startup_s + (r - below) * s_per_step))
        below = r
    return out


def makespan(jobs: list[float], workers: int) -> float:
    """Wall time of ``jobs`` on ``workers``, longest first to the least loaded."""
    loads = [0.0] * max(1, workers)
    for d in sorted(jobs, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def plan_ladder(*, total_s: float, top_steps: int, seeds: int, n_jobs: int, s_per_step: float,
                startup_s: float = 2.0, rollout: int = 1, learn_steps: int | None = None, eta: int = ETA,
                top_k: int = 3, recheck_seeds: int | None = None, min_top: int = MIN_TOP_CONFIGS,
                margin: float = 1.1, baseline_s_per_step: float | None = None, pinned: bool = False) -> LadderPlan:
    """The ladder for ``total_s`` wall seconds on ``n_jobs`` workers.

    The top rung is ``top_steps`` (the space's n_timesteps, or --trial-steps), or the longest the budget
    affords for ``min_top`` configs after the re-checks (held-out: up to ``top_k`` tuned configs and the
    baseline; test: the winner and the baseline; ``recheck_seeds`` seeds each) are reserved at that length.
    ``pinned`` (--trial-steps): the top rung is ``top_steps`` itself whatever the budget affords (the rungs
    below it in whole ``rollout`` units); fewer configs enter (``entering`` 0: not even one fits).
    The lowest rung is top/eta^K for the largest K that keeps it at or above ``learn_steps`` (and a floor).
    ``s_per_step`` is a typical config's worker-seconds per step (evaluation included);
    ``baseline_s_per_step`` the prior config's (the baseline's re-checks; default ``s_per_step``).
    """
    if total_s <= 0 or top_steps <= 0 or seeds <= 0 or n_jobs <= 0 or s_per_step <= 0:
        raise ValueError("plan_ladder: total_s, top_steps, seeds, n_jobs and s_per_step must be > 0")
    rseeds = recheck_seeds or seeds
    bottom = _round(max(MIN_BOTTOM_STEPS, int(learn_steps or 0)), rollout)
    bottom = min(bottom, _round(top_steps, rollout))
    top = int(top_steps) if pinned else _round(top_steps, rollout)
    while True:
        job_s = (startup_s + top * s_per_step) * margin
        base_s = (startup_s + top * (baseline_s_per_step or s_per_step)) * margin
        best: LadderPlan | None = None
        for heldout in range(max(1, top_k), 0, -1):  # fewer held-out configs before a shorter top rung
            reserve = makespan([job_s] * (heldout * rseeds) + [base_s] * rseeds, n_jobs) + \
                makespan([job_s] * rseeds + [base_s] * rseeds, n_jobs)
            tuning = total_s - reserve
            rungs = rungs_for(top, bottom, eta, rollout, exact_top=pinned)
            cost = _ladder_cost(rungs, eta, seeds, s_per_step * margin, startup_s)
            per_entering = sum(c / eta ** i for i, c in enumerate(cost))  # expected worker-s of one entrant
            entering = int(tuning * n_jobs // per_entering) if tuning > 0 else 0
            top_n = entering // eta ** (len(rungs) - 1)
            best = LadderPlan(rungs=rungs, eta=eta, entering=entering, top_configs=top_n, rung_s=tuple(cost),
                              tuning_s=max(0.0, tuning), reserve_s=reserve, heldout_configs=heldout, bottom=bottom)
            if tuning >= MIN_TUNING_SHARE * total_s and top_n >= min_top:
                return best
        assert best is not None  # the loop above runs at least once
        if pinned or top <= bottom:  # pinned, or nothing fits the shares: the least reserve is the best left
            return best
        shorter = _round(top * 0.8, rollout)
        if shorter >= top:  # a top of a few rollouts: 0.8x rounds back up, so one rollout less
            shorter = top - max(1, int(rollout))
        top = max(bottom, shorter)

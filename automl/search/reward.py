"""The reward search: CMA-ES over the reward weights (the "automl-reward" sampler study), and the
reward-hacking alarm that watches what it finds.

A proposal carries the weights (the default weights with the searched terms, ``low < high``,
suggested as ``reward.<term>``); its HPs are left to the phase (the incumbent's). The objective is always the task's true metric, so a generation
that inflates its own shaped return without improving the true metric raises an alarm.
"""
from __future__ import annotations

import math
import warnings
from functools import cached_property
from typing import Callable, Mapping

import optuna
from optuna.distributions import FloatDistribution

from automl.search import studies
from automl.search.owner import Outcome, Proposal
from automl.core.values import is_finite_number

HACKING_MARGIN = 0.10  # shaped return +10% while the true metric is -10% vs the incumbent


class RewardSearch:
    """Proposes reward weights; learns from the true-metric scores it is told; checks for hacking
    (a ``SearchOwner``)."""

    def __init__(self, study: optuna.Study | Callable[[], optuna.Study], terms: Mapping[str, Mapping],
                 default_weights: Mapping[str, float]):
        """``study``: the sampler study, or a callable that opens it on first use (its CMA-ES population
        is the plan's, known once calibration has run)."""
        self._study, self.terms, self.default_weights = study, terms, dict(default_weights)

    @cached_property
    def study(self) -> optuna.Study:
        """The sampler study (opened now if it was given as a callable)."""
        return self._study if isinstance(self._study, optuna.Study) else self._study()

    def warm_start(self) -> None:
        """CMA-ES starts at the default weights already (its ``x0``): nothing to enqueue."""

    def ask(self) -> Proposal:
        """The next weights: the defaults with every searched term suggested by CMA-ES."""
        trial = self.study.ask()
        weights = dict(self.default_weights)
        for name, dist in weight_distributions(self.terms).items():
            weights[name.split(".", 1)[1]] = trial.suggest_float(name, dist.low, dist.high)
        return Proposal((self.study, trial._trial_id), weights=weights)

    @staticmethod
    def tell(outcome: Outcome) -> None:
        """The outcome: complete/failed with its value, pruned, rejected."""
        studies.tell_outcome(outcome)

    @staticmethod
    def alarm(candidate: dict, incumbent: dict | None, tuned: list[dict]) -> dict | None:
        """A reward_hacking alarm for a finished reward config against the incumbent before it, or None;
        ``tuned``: the run's complete tuning configs (for the pooled seed noise)."""
        if not incumbent or incumbent["config_id"] == candidate["config_id"]:
            return None
        return hacking_alarm(candidate, incumbent, pooled_sd=pooled_seed_sd(tuned))


def weight_distributions(terms: Mapping[str, Mapping]) -> dict[str, FloatDistribution]:
    """Optuna distributions of the searched reward weights, named `reward.<term>`."""
    return {f"reward.{name}": FloatDistribution(float(t["low"]), float(t["high"]))
            for name, t in terms.items() if float(t["low"]) < float(t["high"])}


def default_population(n_weights: int) -> int:
    """CMA-ES's default population size, 4 + floor(3 ln n)."""
    return 4 + int(math.floor(3 * math.log(max(1, n_weights))))


def make_reward_sampler(terms: Mapping[str, Mapping], *, seed: int, population: int, multi: bool = False,
                        constraints_func=None):
    """CMA-ES over the weights, started at the default weights; its state lives in the trials. With several
    objectives (``multi``) or --constraint: NSGA-II with generations of ``population`` (CMA-ES optimises one
    value and knows no constraints)."""
    if multi or constraints_func is not None:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, population),
                                             constraints_func=constraints_func)
    x0 = {f"reward.{k}": float(t["default"]) for k, t in terms.items()
          if float(t["low"]) < float(t["high"])}
    widths = [float(t["high"]) - float(t["low"]) for t in terms.values()
              if float(t["low"]) < float(t["high"])]
    sigma0 = min(widths) / 4 if widths else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.samplers.CmaEsSampler(
            x0=x0, sigma0=sigma0, seed=seed, popsize=max(2, population), n_startup_trials=0,
            warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed))


def _mean_of(entry, key):
    vals = [r[key] for r in entry["seeds"] if r.get("state") == "complete" and is_finite_number(r.get(key))]
    return sum(vals) / len(vals) if vals else None


def hacking_alarm(candidate: dict, incumbent: dict, *, pooled_sd: float | None = None) -> dict | None:
    """A reward_hacking alarm when the candidate earns >= 10% more shaped reward than the
    incumbent (both priced under the candidate's weights) while its true metric is >= 10% lower
    AND that drop is outside the seed noise (see `drop_beyond_noise`).

    The incumbent's per-term episode sums, weighted by the candidate's weights, say what the
    incumbent's policy would have earned under the candidate's reward; only when the incumbent
    recorded no terms is its own shaped return used instead.
    """
    shaped = _mean_of(candidate, "shaped_return")
    ref = _shaped_under(incumbent, candidate.get("reward_weights") or {})
    if ref is None:
        ref = _mean_of(incumbent, "shaped_return")
    ta, tb = candidate["score"]["mean"], incumbent["score"]["mean"]
    if shaped is None or ref is None:
        return None
    if not (shaped >= ref + HACKING_MARGIN * abs(ref) and ta <= tb - HACKING_MARGIN * abs(tb)):
        return None
    beyond, test = drop_beyond_noise(_true_values(candidate), _true_values(incumbent), pooled_sd)
    if not beyond:
        return None
    return {"kind": "reward_hacking", "config_id": candidate["config_id"],
            "detail": f"shaped return {_pct(shaped, ref)} (both under its weights), "
                      f"true metric {_pct(ta, tb)} vs incumbent {incumbent['config_id']} ({test})"}


NOISE_Z = 2.0  # the drop must exceed this many standard errors of the difference


def drop_beyond_noise(cand: list[float], inc: list[float], pooled_sd: float | None) -> tuple[bool, str]:
    """Whether the candidate's true metric is below the incumbent's beyond seed noise, and the
    test in words. Both must hold: the 95% bootstrap CIs of the two means are disjoint
    (candidate's upper end below the incumbent's lower end), and the drop is >= NOISE_Z
    standard errors, the seed-to-seed std pooled over the run's configs (two seeds alone say
    little about noise). Without per-seed values nothing is beyond noise."""
    if not cand or not inc:
        return False, "no per-seed values"
    from automl.core.scoring import bootstrap_ci

    c_lo, c_hi = bootstrap_ci(cand)
    i_lo, i_hi = bootstrap_ci(inc)
    drop = sum(inc) / len(inc) - sum(cand) / len(cand)
    text = f"95% CIs [{c_lo:.3g}, {c_hi:.3g}] vs [{i_lo:.3g}, {i_hi:.3g}]"
    if not c_hi < i_lo:
        return False, text + " overlap"
    if pooled_sd is None or pooled_sd <= 0:
        return True, text + " disjoint"
    z = drop / (pooled_sd * math.sqrt(1 / len(cand) + 1 / len(inc)))
    return z >= NOISE_Z, text + f" disjoint, drop {z:.1f} pooled s.e. (need {NOISE_Z:g})"


def pooled_seed_sd(entries) -> float | None:
    """Seed-to-seed std of the true metric pooled over configs with >= 2 complete seeds."""
    ss, dof = 0.0, 0
    for e in entries:
        vals = _true_values(e)
        if len(vals) >= 2:
            m = sum(vals) / len(vals)
            ss += sum((v - m) ** 2 for v in vals)
            dof += len(vals) - 1
    return math.sqrt(ss / dof) if dof else None


def _true_values(entry: dict) -> list[float]:
    return [float(r["episode_reward_mean"]) for r in entry.get("seeds", [])
            if r.get("state") == "complete" and is_finite_number(r.get("episode_reward_mean"))]


def _shaped_under(entry: dict, weights: dict) -> float | None:
    """Mean over complete seeds of sum_i w_i * term_i, from the recorded per-term sums."""
    vals = []
    for r in entry["seeds"]:
        terms = r.get("terms") or {}
        if r.get("state") != "complete" or not weights or not set(weights) <= set(terms):
            return None
        vals.append(sum(float(w) * float(terms[k]) for k, w in weights.items()))
    return sum(vals) / len(vals) if vals else None


def _pct(a, b) -> str:
    return f"{(a - b) / abs(b) * 100:+.0f}%" if b else f"{a - b:+.3g}"

"""Population-based training's decisions (issue 15), pure and seeded: who copies whom, and how the
copy explores. The trainer that carries them out (full-state copies) is built on top of this.

* **Exploit** (at a ready point): members are ranked on the true metric of their latest evaluation;
  each member of the bottom ``quantile`` picks a member of the top ``quantile`` and copies it only when
  the gap beats the evaluation noise: gap > max(``margin``, ``k_std`` x the population's trimmed std,
  ``z_se`` x the standard error of the two evaluations' difference). The first two are DexPBT's rule
  (Sample Factory's 10%-of-the-score rule fails near 0 and Ray Tune copies on any gap, so noise alone
  triggers copies); the trimmed std drops the best and the worst member, so one outlier does not widen
  the margin for everyone. It is small when the members are alike, which is exactly when a small gap is
  noise, so the pair's own measurement noise is the third floor: sqrt(se_dst^2 + se_src^2) from the
  episodes of each evaluation (for a success rate over 32 episodes near 0.5, about 0.125).
* **Explore** (after a copy): each searched value is resampled from the space with ``resample_p``,
  else multiplied by one of ``perturb`` (Ray Tune's 0.8 / 1.2) and clipped to its bounds; integers
  round; the discount factor is perturbed through 1 - gamma (a horizon, as Sample Factory does);
  categorical values are resampled with ``resample_p``, else kept. Reward weights explore the same way
  within their [low, high].
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from automl.core.config import ParamSpec

HORIZON_PARAMS = ("discount_factor",)  # perturbed through 1 - value


@dataclass(frozen=True)
class PBTRules:
    """The knobs of exploit and explore."""

    quantile: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample_p: float = 0.25
    k_std: float = 0.5
    margin: float = 0.0
    z_se: float = 1.0

    def __post_init__(self):
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"quantile: {self.quantile} (allowed: 0 < q <= 0.5)")
        if not 0 <= self.resample_p <= 1:
            raise ValueError(f"resample_p: {self.resample_p} (allowed: 0 <= p <= 1)")
        if not self.perturb or any(not 0 < f < math.inf for f in self.perturb):
            raise ValueError(f"perturb: {self.perturb} (allowed: factors > 0)")


def trimmed_std(scores: Sequence[float]) -> float:
    """The population's std without its best and worst member (all of it below 4 members)."""
    vals = sorted(scores)
    if len(vals) >= 4:
        vals = vals[1:-1]
    if len(vals) < 2:
        return 0.0
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def noise_margin(scores: Sequence[float], rules: PBTRules) -> float:
    """The gap a copy must beat."""
    return max(rules.margin, rules.k_std * trimmed_std(scores))


def exploit(scores: Sequence[float | None], rules: PBTRules, rng: random.Random,
            noise: Sequence[float | None] | None = None) -> list[tuple[int, int]]:
    """(bottom member, top member it copies) pairs for one ready point; members without a finite
    score rank last and copy whenever a top member has one. ``noise``: each evaluation's standard
    error (None: unknown, no per-pair floor)."""
    finite = [s if s is not None and math.isfinite(s) else -math.inf for s in scores]
    n = len(finite)
    q = max(1, int(n * rules.quantile))
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: (finite[i], -i))  # worst first; ties: the later member is worse
    bottom, top = order[:q], order[-q:]
    margin = noise_margin([s for s in finite if s > -math.inf], rules)
    pairs = []
    for dst in bottom:
        src = rng.choice(top)
        if src != dst and finite[src] - finite[dst] > max(margin, pair_noise(noise, dst, src, rules)):
            pairs.append((dst, src))
    return pairs


def pair_noise(noise: Sequence[float | None] | None, dst: int, src: int, rules: PBTRules) -> float:
    """``z_se`` x the standard error of the difference of two evaluations (0 when either is unknown)."""
    if not noise:
        return 0.0
    se_dst = noise[dst]
    if se_dst is None:
        return 0.0
    se_src = noise[src]
    if se_src is None:
        return 0.0
    return rules.z_se * math.sqrt(float(se_dst) ** 2 + float(se_src) ** 2)


def explore_value(spec: ParamSpec, value, rules: PBTRules, rng: random.Random):
    """One searched value after a copy: resampled, or perturbed and clipped to the space's bounds."""
    if spec.type == "categorical":
        return resample(spec, rng) if rng.random() < rules.resample_p else value
    if rng.random() < rules.resample_p:
        return resample(spec, rng)
    factor = rng.choice(rules.perturb)
    if spec.name in HORIZON_PARAMS:
        new = 1.0 - (1.0 - float(value)) * factor
    else:
        new = float(value) * factor
    low, high = spec.bounds()
    new = min(max(new, float(low)), float(high))
    return int(round(new)) if spec.type == "int" else new


def resample(spec: ParamSpec, rng: random.Random):
    if spec.type == "categorical":
        return rng.choice(list(spec.choices))
    bounds = spec.bounds()
    low, high = float(bounds[0]), float(bounds[1])
    if spec.log and low > 0:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return int(round(value)) if spec.type == "int" else value


def explore(params: Mapping, specs: Sequence[ParamSpec], weights: Mapping[str, float],
            terms: Mapping[str, Mapping], rules: PBTRules, rng: random.Random) -> tuple[dict, dict]:
    """(params, weights) after a copy: every searched HP in ``specs`` and every searched weight
    (``low < high``) explored; unsearched values are kept."""
    new_params = dict(params)
    for spec in specs:
        if spec.name in new_params:
            new_params[spec.name] = explore_value(spec, new_params[spec.name], rules, rng)
    new_weights = dict(weights)
    for name, t in terms.items():
        low, high = float(t["low"]), float(t["high"])
        if low < high and name in new_weights:
            spec = ParamSpec(name=f"reward.{name}", type="uniform", low=low, high=high)
            new_weights[name] = explore_value(spec, new_weights[name], rules, rng)
    return new_params, new_weights

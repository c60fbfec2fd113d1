"""How online tuning judges a mutation: the gain in the primary metric (or the first backup metric that
moved) against the noise of the difference of the two means (``automl.search.online``'s decisions use it).

    delta = gain - instability,  gain = mean(post) - mean(pre) (sign flipped for ``min``),
    instability = max(0, std(post) - std(pre))

kept only when delta > epsilon and delta > z x noise, and beyond float noise (``FLOAT_NOISE`` relative to the
metric: two batched branches that differ only in rounding are not a gain).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from automl.core.tune_recipe import Recipe


FLOAT_NOISE = 1e-6  # a gain below this x max(1, |metric|) is rounding, whatever the noise band says


@dataclass(frozen=True)
class Judgement:
    accept: bool
    delta: float
    gain: float
    instability: float
    band: float
    reason: str
    noise: float = 0.0          # sd of the difference of the two means (band = noise_z x noise)
    metric: str = "true_metric"

    @property
    def z(self) -> float:
        """The delta in noise units (what TPE is told: comparable across metrics)."""
        return self.delta / self.noise if self.noise > 0 and math.isfinite(self.delta) else self.delta


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def noise_sd(pre: list[float], se: list[float | None], spread: bool = True) -> float:
    """One evaluation's noise: the spread of the evaluations before the mutation, or the root mean
    square of the evaluations' own standard errors when that is larger (``spread=False``: the standard
    errors alone, for a paired comparison, where the spread of a learning run is its trend)."""
    known = [s for s in se if s is not None and math.isfinite(s)]
    rms = _rms(known)
    return max(_std(pre), rms) if spread or not known else rms


def _rms(values: Sequence[float]) -> float:
    """The root mean square (0 for none)."""
    return math.sqrt(_mean([v * v for v in values])) if values else 0.0


def judge(pre: list[float], post: list[float], recipe: Recipe, se: Sequence[float | None] = (), *,
          mode: str | None = None, epsilon: float | None = None, metric: str = "true_metric",
          spread: bool = True, noise: float | None = None) -> Judgement:
    """Keep or roll back a mutation, from a metric before (``pre``) and after (``post``) it (the primary
    with the recipe's mode and epsilon unless ``mode``/``epsilon`` say otherwise). ``noise``: the sd of the
    difference of the two means when known (a paired comparison's, ``paired_noise``), else from ``se``."""
    if not post or any(not math.isfinite(v) for v in post):
        return Judgement(False, -math.inf, -math.inf, 0.0, 0.0, "non-finite metric after the mutation", metric=metric)
    sign = 1.0 if (mode or recipe.mode) == "max" else -1.0
    eps = recipe.epsilon if epsilon is None else epsilon
    eps = max(eps, FLOAT_NOISE * max(1.0, abs(_mean(pre)) if pre else 1.0, abs(_mean(post))))
    gain = sign * (_mean(post) - _mean(pre))
    instability = max(0.0, _std(post) - _std(pre)) if len(post) > 1 and len(pre) > 1 else 0.0
    delta = gain - instability
    if noise is None:
        noise = noise_sd(pre, list(se), spread) * math.sqrt(1.0 / len(pre) + 1.0 / len(post))
    band = recipe.noise_z * noise
    if delta <= eps:
        return Judgement(False, delta, gain, instability, band, f"delta {delta:.4g} <= epsilon {eps:g}", noise, metric)
    if delta <= band:
        return Judgement(False, delta, gain, instability, band, f"delta {delta:.4g} within the noise band {band:.4g}",
                         noise, metric)
    return Judgement(True, delta, gain, instability, band, "accepted", noise, metric)


def _flat(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(v) for v in values) and max(values) == min(values)


def judge_segment(pre: list[float], post: list[float], recipe: Recipe, se: Sequence = (),
                  pre_b: Sequence[dict] = (), post_b: Sequence[dict] = (), spread: bool = True,
                  actuator: str | None = None, paired: Mapping[str, float] | None = None) -> Judgement:
    """``judge`` on the primary metric; when it did not move at all before and after the mutation (a
    success rate stuck at 0 says nothing), on the first backup metric that did (``pre_b``/``post_b``:
    per evaluation ``{name: (value, se)}``), with epsilon 0 (its units differ) and its own noise band;
    backups that mutating ``actuator`` moves by itself are skipped (``Recipe.backups``). ``paired``: per
    metric, the noise of a paired comparison (``paired_noise``), used in place of the standard errors'."""
    paired = paired or {}
    j = judge(pre, post, recipe, se, metric=recipe.metric, spread=spread, noise=paired.get(recipe.metric))
    if not _flat(pre + post):
        return j
    for name, mode in recipe.backups(actuator):
        b_pre = [b[name][0] for b in pre_b if name in b]
        b_post = [b[name][0] for b in post_b if name in b]
        if len(b_pre) != len(pre) or len(b_post) != len(post) or _flat(b_pre + b_post) \
                or not all(math.isfinite(v) for v in b_pre):
            continue
        b_se = [b[name][1] for b in pre_b] + ([b[name][1] for b in post_b] if not spread else [])
        b_se = [x for x in b_se if x is not None]
        jb = judge(b_pre, b_post, recipe, b_se, mode=mode, epsilon=0.0, metric=name, spread=spread,
                   noise=paired.get(name))
        return Judgement(jb.accept, jb.delta, jb.gain, jb.instability, jb.band,
                         f"{recipe.metric} flat at {pre[0]:g}; on {name}: {jb.reason}", jb.noise, name)
    return j


def corrected_z(z: float, comparisons: int) -> float:
    """The band's z for ``comparisons`` candidates judged against one control at once (Bonferroni: each at
    the one-sided level of ``z`` divided by their number), so K branches do not buy K chances at noise."""
    if comparisons <= 1 or z <= 0:
        return z
    alpha = 1.0 - NormalDist().cdf(z)
    return NormalDist().inv_cdf(1.0 - alpha / comparisons)


def paired_noise(control: Sequence[Mapping], candidate: Sequence[Mapping], name: str) -> float | None:
    """The sd of the mean difference candidate - control in metric ``name``, paired by episode: both branches
    evaluated the same eval envs from the same start states (``{name: per-episode values}`` per evaluation of
    the horizon, in eval-env order), so each env's difference, averaged over the horizon's evaluations, is
    one paired observation, and what the start states share cancels. None when the episodes are not
    recorded for every evaluation or fewer than two envs finished in both."""
    if not control or len(control) != len(candidate):
        return None
    pairs = [(c.get(name), k.get(name)) for c, k in zip(control, candidate)]
    rows: list[tuple[Sequence[float], Sequence[float]]] = [(c, k) for c, k in pairs if c is not None and k is not None]
    if len(rows) != len(pairs) or any(len(c) != len(k) for c, k in rows) or len({len(c) for c, _ in rows}) != 1:
        return None
    diffs = []
    for i in range(len(rows[0][0])):
        d = [k[i] - c[i] for c, k in rows if math.isfinite(c[i]) and math.isfinite(k[i])]
        if d:
            diffs.append(_mean(d))
    return _std(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None


def judge_branches(control: dict, candidates: Sequence[tuple[str, dict]], recipe: Recipe) -> list[Judgement]:
    """Every candidate branch against the control branch, both trained the same horizon from the same state
    (``{"post": values, "se": ses, "post_b": backups, "episodes": per-episode values}`` each): a paired
    comparison, episode by episode where both recorded them (``paired_noise``; else the evaluations' own
    standard errors: no trend in the difference), at the band's z corrected for the number of candidates.
    A candidate whose metric stayed finite wins against a control that diverged."""
    k_recipe = dataclasses.replace(recipe, noise_z=corrected_z(recipe.noise_z, len(candidates)))
    out = []
    for name, cand in candidates:
        if any(not math.isfinite(v) for v in control["post"]) and cand["post"] and \
                all(math.isfinite(v) for v in cand["post"]):
            out.append(Judgement(True, math.inf, math.inf, 0.0, 0.0, "the control branch diverged",
                                 metric=recipe.metric))
            continue
        ctrl_eps, cand_eps = control.get("episodes") or [], cand.get("episodes") or []
        names = {recipe.metric, *(n for n, _ in recipe.backups(name))}
        paired = {n: v for n in names if (v := paired_noise(ctrl_eps, cand_eps, n)) is not None}
        out.append(judge_segment(control["post"], cand["post"], k_recipe, list(control["se"]) + list(cand["se"]),
                                 control["post_b"], cand["post_b"], spread=False, actuator=name, paired=paired))
    return out


def moved(values: Sequence[float], se: Sequence, z: float) -> bool:
    """Whether a metric moved over these evaluations: its range exceeds z x its evaluations' own noise
    (the root mean square of their standard errors; any change at all when they have none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(vals) < 2:
        return True
    noise = _rms([float(s) for s in se if s is not None and math.isfinite(float(s))])
    return max(vals) - min(vals) > max(z * noise, 1e-12)

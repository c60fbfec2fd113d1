"""Per-config scores over seeds: mean, IQM and a stratified bootstrap CI (pure numpy).

The statistics follow rliable (Agarwal et al., 2021): the IQM is the 25%-trimmed
mean with `scipy.stats.trim_mean` semantics, and the bootstrap resamples runs
(seeds) with replacement within each task, the percentile interval is the CI.

Failed seeds: a value that is None, NaN or +-inf is a failed seed and counts as
the *worst* value, never as missing -- dropping it would reward configs that
crash on hard seeds. Pass ``worst=`` explicitly (e.g. 0.0 for a success rate,
or the lowest return the task can give). With ``worst=None`` a failed seed takes
the lowest finite value among the given values; if every seed failed there is no
such value and a ValueError asks for ``worst=``.

Every number returned is a plain Python float, so results go straight into YAML.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from automl.core.names import DEFAULT_RISK, OBJECTIVES

__all__ = ["aggregate", "bootstrap_ci", "iqm", "score", "as_values", "objective_value", "STATISTICS", "AGGREGATES",
           "OBJECTIVES"]

_TRIM = 0.25  # rliable's IQM: drop the bottom and top quarter of runs


def as_values(values, *, worst: float | None = None) -> np.ndarray:
    """Return `values` as a float array (1-D seeds, or 2-D runs x tasks) with failed seeds set to the worst value."""
    arr = np.array(
        _none_to_nan(values.tolist() if isinstance(values, np.ndarray) else values),
        dtype=float,
    )
    if arr.ndim not in (1, 2):
        raise ValueError(f"values: expected a 1-D (seeds) or 2-D (runs x tasks) array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("values: at least one seed is needed for a score")
    failed = ~np.isfinite(arr)
    if failed.any():
        arr[failed] = _worst_value(arr, failed, worst)
    return arr


def _none_to_nan(values):
    """None marks a failed seed; numpy would make an object array of it, so map it to NaN."""
    if values is None:
        return np.nan
    if isinstance(values, (list, tuple)):
        return [_none_to_nan(v) for v in values]
    return values


def _worst_value(arr: np.ndarray, failed: np.ndarray, worst: float | None) -> float:
    """The value a failed seed stands for (see the module docstring)."""
    if worst is not None:
        worst = float(worst)
        if not np.isfinite(worst):
            raise ValueError(f"worst: must be a finite number, got {worst}")
        return worst
    if failed.all():
        raise ValueError("values: every seed failed; pass worst= (the value a failed seed counts as)")
    return float(arr[~failed].min())


def _mean_rows(samples: np.ndarray) -> np.ndarray:
    """Mean of each row of a (n_boot, n) array."""
    return samples.mean(axis=1)


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of each row of a (n_boot, n) array, trim_mean(proportiontocut=0.25) semantics."""
    n = samples.shape[1]
    cut = int(_TRIM * n)  # scipy truncates, so n < 4 trims nothing
    ordered = np.sort(samples, axis=1)
    return ordered[:, cut:n - cut].mean(axis=1)


STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mean": _mean_rows, "iqm": _iqm_rows}


def iqm(values, *, worst: float | None = None) -> float:
    """Interquartile mean: mean of the values left after trimming 25% from each end (all values pooled)."""
    arr = as_values(values, worst=worst)
    return float(_iqm_rows(arr.reshape(1, -1))[0])


def bootstrap_ci(
    values,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    statistic: str = "mean",
    worst: float | None = None,
) -> tuple[float, float]:
    """Percentile CI of `statistic` ('mean' or 'iqm') by stratified bootstrap over seeds.

    1-D values are one config's seeds: seeds are resampled with replacement.
    2-D values are runs x tasks: runs are resampled within each column (task),
    then the statistic is taken over the whole resampled matrix, as in rliable.
    Deterministic for a given `seed`; a single run gives a degenerate CI (x, x).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: unknown {statistic!r} (allowed: {', '.join(STATISTICS)})")
    arr = as_values(values, worst=worst)
    stats = STATISTICS[statistic](_resample(arr, n_boot, np.random.default_rng(seed)))
    alpha = 1.0 - confidence
    lo, hi = np.percentile(stats, [100.0 * alpha / 2, 100.0 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _resample(arr: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap samples flattened to (n_boot, n_values); strata are the columns of a 2-D array."""
    if arr.ndim == 1:
        idx = rng.integers(0, arr.shape[0], size=(n_boot, arr.shape[0]))
        return arr[idx]
    runs, tasks = arr.shape
    idx = rng.integers(0, runs, size=(n_boot, runs, tasks))
    cols = np.broadcast_to(np.arange(tasks), idx.shape)
    return arr[idx, cols].reshape(n_boot, runs * tasks)


def score(
    values: Sequence,
    *,
    worst: float | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Score one config over its seeds: {mean, iqm, ci95: [lo, hi], std, n_seeds} (CI of the mean;
    std: the sample std over seeds, 0 for one seed).

    `n_seeds` counts every seed given, failed ones included (they count as `worst`).
    """
    arr = as_values(values, worst=worst)
    lo, hi = bootstrap_ci(arr, confidence=confidence, n_boot=n_boot, seed=seed)
    return {
        "mean": float(arr.mean()),
        "iqm": iqm(arr),
        "ci95": [lo, hi],
        "std": _std(arr),
        "n_seeds": int(arr.shape[0]),
    }


def _std(arr: np.ndarray) -> float:
    return float(arr.std(ddof=1)) if arr.shape[0] > 1 else 0.0


AGGREGATES: dict[str, Callable[..., float]] = {
    "mean": lambda arr, **_: float(arr.mean()),
    "iqm": lambda arr, **_: iqm(arr),
    # the lower CI bound of the mean rewards configs that are good on every seed
    "lcb": lambda arr, risk=None, **ci: bootstrap_ci(arr, **ci)[0],
    # mean - K * std over seeds (Dierkes et al. 2024): penalises configs whose seeds disagree
    "mean-std": lambda arr, risk=DEFAULT_RISK, **_: float(arr.mean() - risk * _std(arr)),
}


def aggregate(
    values,
    *,
    method: str = "mean",
    worst: float | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    risk: float = DEFAULT_RISK,
) -> float:
    """One number for a config over its seeds: 'mean', 'iqm', 'lcb' (lower CI bound of the mean) or
    'mean-std' (mean - risk * sample std)."""
    if method not in AGGREGATES:
        raise ValueError(f"method: unknown {method!r} (allowed: {', '.join(AGGREGATES)})")
    arr = as_values(values, worst=worst)
    return AGGREGATES[method](arr, confidence=confidence, n_boot=n_boot, seed=seed, risk=risk)




def objective_value(score_or_values, objective: str, *, worst: float | None = None,
                    risk: float = DEFAULT_RISK) -> float:
    """The value configs are ranked by under ``objective`` (mean | iqm | lcb | mean-std), from a
    ``score()`` dict or from per-seed values; ``mean-std`` is mean - ``risk`` * std over seeds (Dierkes
    et al. 2024). The one ranking rule: what samplers are told, the incumbent, the pruner's
    intermediate values and the held-out winner all use it."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: unknown {objective!r} (allowed: {', '.join(OBJECTIVES)})")
    if isinstance(score_or_values, dict):
        s = score_or_values
        if objective == "mean-std":
            return float(s["mean"] - risk * s.get("std", 0.0))  # a score recorded before std existed: its mean
        return float({"mean": lambda: s["mean"], "iqm": lambda: s["iqm"], "lcb": lambda: s["ci95"][0]}[objective]())
    return aggregate(score_or_values, method=objective, worst=worst, risk=risk)

"""Seed-vs-config variance split: how much of the spread of per-seed results is seed noise.

A one-way random-effects ANOVA (configs are the groups, seeds the replicates) with the
classic method-of-moments estimator, which handles unequal seed counts per config:

    MS_between = SS_between / (k - 1),  MS_within = SS_within / (N - k)
    n0 = (N - sum(n_i^2) / N) / (k - 1)          # the "average" group size
    var_config = max(0, (MS_between - MS_within) / n0),  var_seed = MS_within

seed_share = var_seed / (var_seed + var_config). A seed_share near 1 means the ranking of
configs is mostly noise: more seeds per config would be needed to trust it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _clean_groups(per_seed_values_by_config) -> list[np.ndarray]:
    """Finite values per config; configs with no finite value are dropped."""
    groups: Iterable[Sequence[float]]
    if isinstance(per_seed_values_by_config, Mapping):
        groups = per_seed_values_by_config.values()
    else:
        groups = per_seed_values_by_config
    cleaned = []
    for values in groups:
        arr = np.asarray([v for v in values if v is not None], dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            cleaned.append(arr)
    return cleaned


def variance_split(per_seed_values_by_config) -> dict[str, float] | None:
    """Shares of per-seed variance due to the seed and to the config: {seed_share, config_share}.

    Takes a mapping config_id -> per-seed values (or a list of such lists). NaN/None seeds
    are ignored. Returns None when the split cannot be estimated: fewer than two configs,
    no config with two finite seeds, or no variance at all.
    """
    groups = _clean_groups(per_seed_values_by_config)
    k = len(groups)
    sizes = np.asarray([g.size for g in groups], dtype=float)
    total = float(sizes.sum()) if k else 0.0
    if k < 2 or total - k < 1:
        return None
    grand_mean = float(np.concatenate(groups).mean())
    ss_between = float(sum(g.size * (g.mean() - grand_mean) ** 2 for g in groups))
    ss_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    ms_between = ss_between / (k - 1)
    ms_within = ss_within / (total - k)
    n0 = (total - float((sizes**2).sum()) / total) / (k - 1)
    var_config = max(0.0, (ms_between - ms_within) / n0)
    var_seed = ms_within
    if var_seed + var_config <= 0.0:
        return None
    seed_share = var_seed / (var_seed + var_config)
    return {"seed_share": float(seed_share), "config_share": float(1.0 - seed_share)}


def variance_with_notes(per_seed_values_by_config, notes: list[str]) -> dict[str, float] | None:
    """variance_split rounded for reports; appends a note when it is missing or noise-dominated."""
    split = variance_split(per_seed_values_by_config)
    if split is None:
        notes.append("variance split needs 2+ complete configs with 2+ seeds and some spread")
        return None
    if split["seed_share"] > 0.5:
        notes.append(f"{split['seed_share']:.0%} of the per-seed variance is seed noise: "
                     "the config ranking is not reliable; add seeds")
    return {k: round(v, 4) for k, v in split.items()}

"""Search space <-> Optuna: distributions, suggest, encode/decode, grid, constraints. The conversion
of search coordinates to SB3 PPO arguments is `automl.core.config.to_ppo_setup` (workers need no Optuna)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
import optuna

from automl.core import constraints
from automl.core.config import ALIASES, REWARD_PREFIX, ParamSpec, SpaceSpec, canonical_name, coerce_value, freeze, thaw
from automl.core.errors import AutoMLError

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
# batched tasks with their own space file
TASK_SPACES = ("cartpole", "navigation", "acrobot", "pendulum", "mountaincar")
MAX_ENUMERATED = 100  # an int/stepped range with more values needs explicit grid values
MAX_GRID = 100_000  # beyond this, a grid is not a plan anyone can run (and listing it gets slow)


def default_space_path(task_or_env_id: str) -> Path:
    """configs/spaces/<task>.yaml for the batched tasks, configs/spaces/ppo_default.yaml for any other env."""
    name = str(task_or_env_id).strip().lower()
    return CONFIGS_DIR / "spaces" / (f"{name}.yaml" if name in TASK_SPACES else "ppo_default.yaml")


# ---------------------------------------------------------------------------------------------
# Encoding: Optuna categorical choices must be None/bool/int/float/str, so list choices
# (layer sizes) travel as strings such as "256-128-64" and are decoded through the spec.
# ---------------------------------------------------------------------------------------------

def encode_choice(value):
    """Optuna-safe form of one choice: lists/tuples become '256-128-64' ('[]' for an empty list)."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value) if value else "[]"
    return value


def _decoder(param: ParamSpec) -> dict:
    return {encode_choice(c): c for c in param.choices}


def _int_bounds(p: ParamSpec) -> tuple[int, int, int]:
    """(low, high, step) of an int param: ints (the parser and SearchSpace.add_int store ints)."""
    low, high = p.bounds()
    return cast(int, low), cast(int, high), cast(int, p.step or 1)


def distributions(spec: SpaceSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions keyed by canonical name (list choices encoded as strings)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for p in spec.params:
        if p.type == "categorical":
            out[p.name] = optuna.distributions.CategoricalDistribution([encode_choice(c) for c in p.choices])
        elif p.type == "int":
            low, high, step = _int_bounds(p)
            out[p.name] = optuna.distributions.IntDistribution(low, high, log=p.log, step=step)
        else:
            out[p.name] = optuna.distributions.FloatDistribution(*p.bounds(), log=p.log, step=p.step)
    return out


def suggest(trial: optuna.Trial, spec: SpaceSpec) -> dict:
    """Sample every searchable param through trial.suggest_*; returns decoded canonical params (lists as lists)."""
    raw = {}
    for p in spec.params:
        if p.type == "categorical":
            raw[p.name] = trial.suggest_categorical(p.name, [encode_choice(c) for c in p.choices])
        elif p.type == "int":
            low, high, step = _int_bounds(p)
            raw[p.name] = trial.suggest_int(p.name, low, high, step=step, log=p.log)
        else:
            raw[p.name] = trial.suggest_float(p.name, *p.bounds(), step=p.step, log=p.log)
    return decode_params(spec, raw)


def decode_params(spec: SpaceSpec, optuna_params: Mapping) -> dict:
    """Optuna params -> user params: encoded choices back to lists; other keys (reward.*) unchanged."""
    by_name = {p.name: p for p in spec.params}
    out = {}
    for name, value in optuna_params.items():
        param = by_name.get(name)
        if param is not None and param.type == "categorical":
            value = _decoder(param).get(value, value)
        out[name] = thaw(value)
    return out


def encode_params(spec: SpaceSpec, params: Mapping) -> dict:
    """User params (either naming style) -> Optuna params for enqueue_trial/FixedTrial; fixed keys dropped."""
    by_name = {p.name: p for p in spec.params}
    out = {}
    for key, value in params.items():
        if str(key).startswith(REWARD_PREFIX):
            out[key] = value
            continue
        name = canonical_name(key, path=spec.path, key=f"params.{key}")
        if name in spec.fixed and name not in by_name:
            continue
        if name not in by_name:
            raise AutoMLError(f"{spec.path}: params.{key}: not a parameter of this space "
                              f"(allowed: {', '.join(by_name) or 'none'})")
        out[name] = _encode_one(by_name[name], value, where=f"{spec.path}: params.{key}")
    return out


def _encode_one(param: ParamSpec, value, *, where: str):
    value = freeze(coerce_value(param.name, value, where=where))
    if param.type == "categorical":
        if value not in param.choices:
            allowed = ", ".join(repr(thaw(c)) for c in param.choices)
            raise AutoMLError(f"{where}: {thaw(value)!r} is not one of the choices (allowed: {allowed})")
        return encode_choice(value)
    if not param.low <= value <= param.high:
        raise AutoMLError(f"{where}: {value} is outside the range (allowed: [{param.low}, {param.high}])")
    return value


def prior_params(spec: SpaceSpec) -> dict:
    """The priors of the searchable params (decoded): the warm-start trial to enqueue first."""
    return {p.name: thaw(p.prior) for p in spec.params if p.prior is not None}


def merged(spec: SpaceSpec, params: Mapping) -> dict:
    """A complete config: the space's fixed values overlaid with searched params (canonical names)."""
    return {**{k: thaw(v) for k, v in spec.fixed.items()}, **params}


# ---------------------------------------------------------------------------------------------
# Grid enumeration and constraints.
# ---------------------------------------------------------------------------------------------

def _nice(x: float) -> float:
    return float(f"{x:.6g}")  # geomspace/linspace points printed and stored without float noise


def grid_values(spec: SpaceSpec, param: ParamSpec) -> list:
    """The grid values of one param (decoded); AutoMLError says why a continuous param has none."""
    if param.type == "categorical" or param.choices:
        return [thaw(c) for c in param.choices]
    low, high = param.bounds()
    if param.grid_points:
        space = np.geomspace if param.log else np.linspace
        points = space(low, high, param.grid_points)
        if param.type == "int":
            return sorted({int(round(x)) for x in points})
        return [_nice(float(x)) for x in points]
    if param.type == "int" or param.step:
        step = param.step or 1
        count = int(round((high - low) / step)) + 1
        if count <= MAX_ENUMERATED:
            return [low + k * step if param.type == "int" else _nice(low + k * step)
                    for k in range(count)]
        reason = f"{count} values in its range"
    else:
        reason = f"{param.type} is continuous"
    raise AutoMLError(f"{spec.path}: searchable.{param.name}: not enumerable for grid search: {reason} "
                      f"(allowed: add `values: [...]` or `grid_points: N`)")


def grid_search_space(spec: SpaceSpec) -> dict[str, list]:
    """{name: encoded grid values} for optuna.samplers.GridSampler (AutoMLError if too large)."""
    _check_grid_size(spec)
    return {p.name: [encode_choice(v) for v in grid_values(spec, p)] for p in spec.params}


def _check_grid_size(spec: SpaceSpec) -> int:
    total = grid_size(spec)
    if total > MAX_GRID:
        raise AutoMLError(f"{spec.path}: searchable: grid has {total} combinations "
                          f"(allowed: at most {MAX_GRID}; use random or bayesian search)")
    return total


def grid_size(spec: SpaceSpec) -> int:
    """Number of combinations in the full grid, before constraints."""
    return math.prod(len(grid_values(spec, p)) for p in spec.params)


def grid(spec: SpaceSpec) -> list[dict]:
    """Every grid combination (decoded params, file order) that no constraint rejects."""
    _check_grid_size(spec)
    names = spec.names
    columns = [grid_values(spec, p) for p in spec.params]
    combos = (dict(zip(names, values)) for values in itertools.product(*columns))
    return [c for c in combos if not violated_constraints(spec, c)]


def violated_constraints(spec: SpaceSpec, params: Mapping) -> list[str]:
    """The constraints that reject `params` (merged over spec.fixed); empty means the config is allowed."""
    values = merged(spec, {canonical_name(k, path=spec.path, key=f"params.{k}"): v for k, v in params.items()
                           if not str(k).startswith(REWARD_PREFIX)})
    return [expr for i, expr in enumerate(spec.constraints)
            if constraints.evaluate(expr, values, resolve=ALIASES, where=f"{spec.path}: constraints[{i}]")]

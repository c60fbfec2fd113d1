"""Seed 003's run-config format: a ``hyperparameter_optimization:`` mapping (search space with
``type: float/int/categorical``, ``min``/``max``, ``log``, ``choices``; ``evaluation`` with metrics,
direction, cross-validation and early stopping; ``n_trials``, ``timeout_hours``, ``algorithm``, ...).

``parse`` validates the document once into an ``HPOFile`` (every key checked, unknown keys refused in
one line). Two readers use it: the Python API (``automl.api.seed003``: a SearchSpace over any names plus
a SearchConfig, for a user's objective) and ``automl run --config FILE`` (``run_flags`` and
``preset_mapping``: a PPO run, whose parameter names must be PPO parameters). README "Seed 003's config
file" says how each key maps. Standard library and PyYAML only.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from automl.core.config import load_yaml
from automl.core.errors import AutoMLError
from automl.core.names import ALIASES, CANONICAL_NAMES, SEARCH_METHODS, to_number

KEY = "hyperparameter_optimization"
TOP_KEYS = ("algorithm", "n_trials", "timeout_hours", "timeout", "search_space", "evaluation", "sampler",
            "pruner", "parallel", "n_jobs", "seed", "constraints")
EVAL_KEYS = ("metric", "primary_metric", "direction", "secondary_metrics", "cross_validation", "n_folds",
             "early_stopping", "patience", "constraints")
PARAM_KEYS = ("type", "min", "max", "low", "high", "log", "step", "choices", "values")
TYPES = ("float", "int", "categorical")
ALGORITHMS = ("bayesian", "tpe", "random", "grid", "hyperband", "cmaes", "qmc", "nsga2")
SAMPLERS = ("tpe", "cmaes", "random", "qmc", "nsga2")
PRUNERS = ("median", "asha", "hyperband", "none")
DIRECTIONS = {"minimize": "minimize", "maximize": "maximize", "min": "minimize", "max": "maximize"}
DEFAULT_FOLDS = 5  # the seed's KFold(n_splits=5)
# the seed's metric words -> this project's per-seed metrics (a PPO run)
RUN_METRICS = {"training_time": "train_time_s", "train_time": "train_time_s", "memory_usage": "peak_memory_mb",
               "memory": "peak_memory_mb", "reward": "episode_reward_mean"}
TASK_METRICS = ("episode_reward_mean", "success_rate")  # what a PPO run ranks by
SUPERVISED = ("validation_loss", "val_loss", "validation_accuracy", "val_accuracy", "loss", "accuracy")


@dataclass(frozen=True)
class HPOParam:
    """One search_space entry: float / int / categorical."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()


@dataclass(frozen=True)
class HPOFile:
    """A validated seed-003 document. ``metrics`` is ((name, direction), ...), primary first."""

    path: str
    params: tuple[HPOParam, ...]
    algorithm: str = "bayesian"
    sampler: str | None = None
    pruner: str | None = None
    n_trials: int | None = None
    timeout_s: float | None = None
    metrics: tuple[tuple[str, str], ...] = ()
    constraints: tuple[str, ...] = ()
    cross_validation: bool | None = None
    n_folds: int | None = None
    early_stopping: bool | None = None
    patience: int | None = None
    n_jobs: int | None = None
    seed: int | None = None
    direction_given: bool = False  # evaluation.direction written (else minimize, the seed's and Optuna's default)

    @property
    def folds(self) -> int | None:
        """Evaluations per config the file asks for: n_folds with cross-validation, 1 without, None unsaid."""
        if self.cross_validation is False:
            return 1
        if self.cross_validation or self.n_folds is not None:
            return self.n_folds or DEFAULT_FOLDS
        return None


def is_hpo(raw: object) -> TypeGuard[Mapping]:
    """Whether a loaded YAML document is in seed 003's format."""
    return isinstance(raw, Mapping) and KEY in raw


def load(path) -> HPOFile:
    """Read and validate a seed-003 YAML file."""
    return parse(load_yaml(path, allowed=f"a mapping with the key {KEY}"), str(path))


def _keys(raw: Mapping, allowed, where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise AutoMLError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _mapping(raw: object, where: str) -> Mapping:
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{where}: {type(raw).__name__} is not a mapping (allowed: a YAML mapping)")
    return raw


def _int(raw: Mapping, key: str, where: str, low: int = 1) -> int | None:
    if raw.get(key) is None:
        return None
    value = to_number(raw[key], where=f"{where}.{key}", integer=True)
    if value < low:
        raise AutoMLError(f"{where}.{key}: {value} (allowed: an integer >= {low})")
    return value


def _bool(raw: Mapping, key: str, where: str) -> bool | None:
    if raw.get(key) is None:
        return None
    if not isinstance(raw[key], bool):
        raise AutoMLError(f"{where}.{key}: {raw[key]!r} is not a boolean (allowed: true, false)")
    return raw[key]


def _choice(raw: Mapping, key: str, allowed, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise AutoMLError(f"{where}.{key}: unknown {value!r} (allowed: {', '.join(allowed)})")
    return value


def parse_param(name: str, raw: object, where: str) -> HPOParam:
    """One search_space entry: {type: float|int, min, max, log?, step?} or {type: categorical, choices}."""
    where = f"{where}.{name}"
    raw = _mapping(raw, where)
    _keys(raw, PARAM_KEYS, where)
    ptype = raw.get("type")
    if ptype not in TYPES:
        raise AutoMLError(f"{where}.type: {ptype!r} (allowed: {', '.join(TYPES)})")
    if ptype == "categorical":
        choices = raw.get("choices", raw.get("values"))
        if not isinstance(choices, list) or not choices:
            raise AutoMLError(f"{where}.choices: {choices!r} (allowed: a non-empty list)")
        extra = [k for k in raw if k not in ("type", "choices", "values")]
        if extra:
            raise AutoMLError(f"{where}.{extra[0]}: not for a categorical (allowed: type, choices)")
        return HPOParam(name, "categorical", choices=tuple(choices))
    bounds = []
    for pair in (("min", "low"), ("max", "high")):
        key = next((k for k in pair if k in raw), None)
        if key is None:
            raise AutoMLError(f"{where}: missing {pair[0]} (allowed: a {ptype} needs min and max)")
        bounds.append(to_number(raw[key], where=f"{where}.{key}", integer=ptype == "int"))
    low, high = bounds
    log = _bool(raw, "log", where) or False
    if not low < high:
        raise AutoMLError(f"{where}: min ({low}) must be < max ({high}) (allowed: min < max)")
    if log and low <= 0:
        raise AutoMLError(f"{where}.log: needs min > 0, got {low} (allowed: log with 0 < min)")
    step = None if raw.get("step") is None else to_number(raw["step"], where=f"{where}.step", integer=ptype == "int")
    return HPOParam(name, ptype, low, high, log, step)


def _metrics(ev: Mapping, where: str) -> tuple[tuple[str, str], ...]:
    if "metric" in ev and "primary_metric" in ev:
        raise AutoMLError(f"{where}: metric and primary_metric both given (allowed: one of them)")
    primary = ev.get("primary_metric", ev.get("metric"))
    direction = DIRECTIONS.get(ev.get("direction", "minimize"))
    if direction is None:
        raise AutoMLError(f"{where}.direction: {ev['direction']!r} (allowed: minimize, maximize)")
    if primary is None:
        return ()
    out = [(str(primary), direction)]
    secondary = ev.get("secondary_metrics") or []
    if not isinstance(secondary, list):
        raise AutoMLError(f"{where}.secondary_metrics: {secondary!r} (allowed: a list of names, name:max or name:min)")
    for item in secondary:  # the seed's secondaries are costs (training time, memory): minimized
        name, _, word = str(item).partition(":")
        if word and word not in DIRECTIONS:
            raise AutoMLError(f"{where}.secondary_metrics: {item!r}: direction {word!r} (allowed: max, min)")
        out.append((name, DIRECTIONS[word or "min"]))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise AutoMLError(f"{where}: a metric named twice in {names} (allowed: each metric once)")
    return tuple(out)


def _constraints(raw: object, where: str) -> tuple[str, ...]:
    """A list of 'metric >= x' strings, or the seed's {metric: [min, max]} (either end may be null)."""
    if raw is None:
        return ()
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return tuple(c.strip() for c in raw)
    if isinstance(raw, Mapping):
        out = []
        for name, pair in raw.items():
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise AutoMLError(f"{where}.{name}: {pair!r} (allowed: [min, max], null for no bound)")
            lo, hi = (None if v is None else to_number(v, where=f"{where}.{name}") for v in pair)
            out += ([f"{name} >= {lo!r}"] if lo is not None else []) + ([f"{name} <= {hi!r}"] if hi is not None else [])
        return tuple(out)
    raise AutoMLError(f"{where}: {raw!r} (allowed: a list of 'metric >= value' strings or {{metric: [min, max]}})")


def parse(doc: object, path: str) -> HPOFile:
    """Validate a loaded document (top level ``hyperparameter_optimization:``) into an HPOFile."""
    if not is_hpo(doc):
        raise AutoMLError(f"{path}: top level: no {KEY!r} key (allowed: seed 003's {KEY}: mapping)")
    if len(doc) != 1:
        other = next(k for k in doc if k != KEY)
        raise AutoMLError(f"{path}: top level: unknown key {other!r} (allowed: {KEY} alone)")
    where = f"{path}: {KEY}"
    raw = _mapping(doc[KEY], where)
    _keys(raw, TOP_KEYS, where)
    space = _mapping(raw.get("search_space"), f"{where}.search_space")
    if not space:
        raise AutoMLError(f"{where}.search_space: empty (allowed: name: {{type: float|int|categorical, ...}})")
    params = tuple(parse_param(str(n), v, f"{where}.search_space") for n, v in space.items())
    ev = _mapping(raw.get("evaluation") or {}, f"{where}.evaluation")
    _keys(ev, EVAL_KEYS, f"{where}.evaluation")
    if "timeout_hours" in raw and "timeout" in raw:
        raise AutoMLError(f"{where}: timeout and timeout_hours both given (allowed: one of them)")
    timeout = None
    if raw.get("timeout_hours") is not None:
        timeout = 3600.0 * to_number(raw["timeout_hours"], where=f"{where}.timeout_hours")
    elif raw.get("timeout") is not None:
        timeout = float(to_number(raw["timeout"], where=f"{where}.timeout"))
    if timeout is not None and timeout <= 0:
        raise AutoMLError(f"{where}.timeout: {timeout} s (allowed: > 0)")
    if "parallel" in raw and "n_jobs" in raw:
        raise AutoMLError(f"{where}: parallel and n_jobs both given (allowed: one of them)")
    n_jobs = _int(raw, "parallel", where) if "parallel" in raw else _int(raw, "n_jobs", where)
    cons = _constraints(raw.get("constraints"), f"{where}.constraints") + \
        _constraints(ev.get("constraints"), f"{where}.evaluation.constraints")
    return HPOFile(path, params, algorithm=_choice(raw, "algorithm", ALGORITHMS, where) or "bayesian",
                   sampler=_choice(raw, "sampler", SAMPLERS, where), pruner=_choice(raw, "pruner", PRUNERS, where),
                   n_trials=_int(raw, "n_trials", where), timeout_s=timeout,
                   metrics=_metrics(ev, f"{where}.evaluation"), constraints=cons,
                   cross_validation=_bool(ev, "cross_validation", f"{where}.evaluation"),
                   n_folds=_int(ev, "n_folds", f"{where}.evaluation"),
                   early_stopping=_bool(ev, "early_stopping", f"{where}.evaluation"),
                   patience=_int(ev, "patience", f"{where}.evaluation"), n_jobs=n_jobs,
                   seed=_int(raw, "seed", where, low=0), direction_given="direction" in ev)


# ---------------------------------------------------------------------------------------------
# A PPO run (automl run --config FILE): flags and the space (a preset in mode `only`).
# ---------------------------------------------------------------------------------------------

def _ppo_names(hpo: HPOFile) -> None:
    known = set(CANONICAL_NAMES) | set(ALIASES)
    bad = [p.name for p in hpo.params if p.name not in known]
    if bad:
        raise AutoMLError(f"{hpo.path}: {KEY}.search_space: {', '.join(bad)} {'is not a PPO parameter' if len(bad) == 1 else 'are not PPO parameters'} "
                          f"(allowed: {', '.join(CANONICAL_NAMES)}; SB3 aliases: {', '.join(ALIASES)})")


def preset_mapping(hpo: HPOFile) -> dict:
    """The file's search space as a preset (mode only: these params searched, the rest of the env's space
    fixed at its priors), in the project's space schema."""
    _ppo_names(hpo)
    searchable: dict[str, dict] = {}
    for p in hpo.params:
        if p.type == "categorical":
            searchable[p.name] = {"type": "choice", "values": list(p.choices)}
        elif p.type == "int":
            searchable[p.name] = {"type": "int", "low": p.low, "high": p.high, "log": p.log,
                                  **({"step": p.step} if p.step is not None else {})}
        else:
            searchable[p.name] = {"type": "loguniform" if p.log else "uniform", "low": p.low, "high": p.high,
                                  **({"step": p.step} if p.step is not None and not p.log else {})}
    return {"preset": Path(hpo.path).stem, "mode": "only", "searchable": searchable,
            "description": f"seed 003 config file {hpo.path}"}


def _run_metric(name: str, path: str) -> str:
    from automl.core.objectives import METRICS, STEPS_TO

    mapped = RUN_METRICS.get(name, name)
    if mapped in METRICS or STEPS_TO.match(mapped):
        return mapped
    hint = " is a supervised model's metric" if name in SUPERVISED else " is not a PPO run metric"
    raise AutoMLError(f"{path}: {KEY}.evaluation: {name!r}{hint} (allowed: {', '.join(METRICS)}, steps_to_<x>; "
                      f"training_time -> train_time_s, memory_usage -> peak_memory_mb)")


def _run_selection(hpo: HPOFile) -> dict:
    out: dict[str, Any] = {}
    metrics = [(_run_metric(n, hpo.path), d) for n, d in hpo.metrics]
    if metrics and not hpo.direction_given and metrics[0][0] in TASK_METRICS:
        metrics[0] = (metrics[0][0], "maximize")  # no direction written: the task's metric is maximized
    if len(metrics) == 1:
        name, direction = metrics[0]
        if name not in TASK_METRICS or direction != "maximize":
            raise AutoMLError(f"{hpo.path}: {KEY}.evaluation: {name} ({direction}) as the only metric (allowed: "
                              f"episode_reward_mean or success_rate, maximize: a PPO run ranks by the task's metric; "
                              f"others go in secondary_metrics)")
    elif metrics:
        out["metrics"] = ",".join(f"{n}:{'max' if d == 'maximize' else 'min'}" for n, d in metrics)
    if hpo.constraints:
        out["constraints"] = [_run_constraint(c, hpo.path) for c in hpo.constraints]
    return out


def _run_constraint(text: str, path: str) -> str:
    """A constraint with the seed's metric words renamed (training_time -> train_time_s, ...)."""
    from automl.core import constraints as safe

    tree = safe.parse(text, where=f"{path}: {KEY}.constraints")
    for name in safe.names(tree):
        mapped = _run_metric(name, path)
        if mapped != name:
            text = re.sub(rf"\b{re.escape(name)}\b", mapped, text)
    return text


def run_flags(hpo: HPOFile) -> dict:
    """The `automl run` flags (RunConfig field -> value) the file sets; the space goes in as ``preset``."""
    preset_mapping(hpo)  # the names are PPO parameters
    if hpo.patience is not None:
        raise AutoMLError(f"{hpo.path}: {KEY}.evaluation.patience: a PPO run has no patience stop (allowed: drop it; "
                          f"early_stopping: true prunes a config trailing the median at an evaluation)")
    method = hpo.sampler if hpo.algorithm in ("bayesian", "tpe") and hpo.sampler else hpo.algorithm
    if method not in SEARCH_METHODS:
        raise AutoMLError(f"{hpo.path}: {KEY}.algorithm: {method!r} (allowed: {', '.join(SEARCH_METHODS)})")
    flags: dict[str, Any] = {"mode": "hp", "search_method": method, "preset": hpo.path}
    if hpo.n_trials is not None:
        flags["hp_trials"] = hpo.n_trials
    if hpo.timeout_s is not None:
        flags["budget_hours"] = hpo.timeout_s / 3600.0
    if hpo.folds is not None:
        flags["seeds"] = hpo.folds
    if hpo.early_stopping is not None or hpo.pruner is not None:
        flags["pruner"] = "none" if hpo.early_stopping is False else (hpo.pruner or "median")
    if hpo.n_jobs is not None:
        flags["n_jobs"] = hpo.n_jobs
    if hpo.seed is not None:
        flags["seed"] = hpo.seed
    return {**flags, **_run_selection(hpo)}

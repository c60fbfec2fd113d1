"""Parameter names (canonical + SB3 aliases), their domains and value coercion; the names of the search
methods and pruners (``automl.search.strategies`` maps them to Optuna). Imports neither torch nor optuna."""
from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

from automl.core.errors import AutoMLError


# ---------------------------------------------------------------------------------------------
# Parameter names: canonical (the seed's, skrl style) and SB3 aliases accepted on input.
# ---------------------------------------------------------------------------------------------

ALIASES: dict[str, str] = {
    "gamma": "discount_factor",
    "gae_lambda": "lambda_param",
    "clip_range": "ratio_clip",
    "clip_range_vf": "value_clip",
    "ent_coef": "entropy_loss_scale",
    "vf_coef": "value_loss_scale",
    "max_grad_norm": "grad_norm_clip",
    "n_epochs": "learning_epochs",
    "n_steps": "rollouts",
    "net_arch": "policy_hidden_layer_sizes",
}


@dataclass(frozen=True)
class Domain:
    """What values a parameter takes: kind (float|int|bool|str|layers), a test and its wording."""

    kind: str
    allowed: str
    test: Callable[[Any], bool] = lambda v: True
    nullable: bool = False  # null is a meaningful value (e.g. value_clip: null = no value clipping)


_SCHEDULES = ("constant", "linear")
DOMAINS: dict[str, Domain] = {
    "learning_rate": Domain("float", "a number > 0", lambda v: v > 0),
    "discount_factor": Domain("float", "a number in (0, 1]", lambda v: 0 < v <= 1),
    "lambda_param": Domain("float", "a number in (0, 1]", lambda v: 0 < v <= 1),
    "ratio_clip": Domain("float", "a number > 0", lambda v: v > 0),
    "value_clip": Domain("float", "a number > 0, or null for no value clipping", lambda v: v > 0, True),
    "entropy_loss_scale": Domain("float", "a number >= 0", lambda v: v >= 0),
    "value_loss_scale": Domain("float", "a number >= 0", lambda v: v >= 0),
    "grad_norm_clip": Domain("float", "a number > 0", lambda v: v > 0),
    "learning_epochs": Domain("int", "an integer >= 1", lambda v: v >= 1),
    "rollouts": Domain("int", "an integer >= 1", lambda v: v >= 1),
    "mini_batches": Domain("int", "an integer >= 1", lambda v: v >= 1),
    "batch_size": Domain("int", "an integer >= 2", lambda v: v >= 2),
    "policy_hidden_layer_sizes": Domain("layers", "a list of integers >= 1, e.g. [64, 64]"),
    "seed": Domain("int", "an integer >= 0, or null", lambda v: v >= 0, True),
    "num_envs": Domain("int", "an integer >= 1", lambda v: v >= 1),
    "n_timesteps": Domain("int", "an integer >= 1", lambda v: v >= 1),
    "target_kl": Domain("float", "a number > 0, or null", lambda v: v > 0, True),
    "normalize": Domain("bool", "true or false"),
    "learning_rate_schedule": Domain("str", " or ".join(_SCHEDULES), lambda v: v in _SCHEDULES),
}
CANONICAL_NAMES: tuple[str, ...] = tuple(DOMAINS)
# mini_batches derives batch_size; giving both would leave one silently ignored
EXCLUSIVE = (("mini_batches", "batch_size"),)


def _near(word: object, options) -> str:
    match = difflib.get_close_matches(str(word), list(options), n=1)
    return f"; did you mean '{match[0]}'?" if match else ""


def canonical_name(name: object, *, path: str, key: str) -> str:
    """The canonical (seed-style) name for a seed or SB3 spelling; AutoMLError suggests the nearest."""
    if isinstance(name, str):
        if name in DOMAINS:
            return name
        if name in ALIASES:
            return ALIASES[name]
    spellings = [*CANONICAL_NAMES, *ALIASES]
    raise AutoMLError(f"{path}: {key}: unknown parameter {name!r}{_near(name, spellings)} "
                      f"(allowed: {', '.join(CANONICAL_NAMES)}; SB3 aliases: {', '.join(ALIASES)})")


def canonical_mapping(raw: Mapping, *, path: str, key: str) -> dict:
    """Rename a {name: value} mapping to canonical names; a name given in two styles is an error."""
    out: dict = {}
    spelled: dict[str, str] = {}
    for name, value in raw.items():
        canonical = canonical_name(name, path=path, key=f"{key}.{name}")
        if canonical in out:
            raise AutoMLError(f"{path}: {key}.{name}: '{canonical}' is given twice (as '{spelled[canonical]}' "
                              f"and '{name}') (allowed: one spelling per parameter)")
        out[canonical], spelled[canonical] = value, str(name)
    return out


# ---------------------------------------------------------------------------------------------
# Search methods and pruners by name: the one list, checked by the command line (automl.run.runconfig,
# which must not import Optuna), presets and the API; automl.search.strategies has a factory for each.
# ---------------------------------------------------------------------------------------------

# --objective: the one ranking rule (automl.core.scoring.objective_value); mean-std is mean - K*std (--risk K)
OBJECTIVES = ("mean", "iqm", "lcb", "mean-std")
DEFAULT_RISK = 1.0
SEARCH_METHODS: tuple[str, ...] = ("grid", "random", "bayesian", "tpe", "cmaes", "qmc", "hyperband", "nsga2")
# methods that optimise several objectives (--metrics); CMA-ES optimises one
MULTI_OBJECTIVE_METHODS: tuple[str, ...] = ("random", "bayesian", "tpe", "qmc", "nsga2", "grid")
PRUNERS: tuple[str, ...] = ("none", "median", "asha", "hyperband")
DEFAULT_PRUNERS: dict[str, str] = {"hyperband": "hyperband"}  # search method -> pruner it implies


def default_pruner_for(method: str, pruner: str | None = None) -> str:
    """The pruner to use: the one given, else the one the method implies (hyperband), else 'none'."""
    return pruner if pruner is not None else DEFAULT_PRUNERS.get(method, "none")


# ---------------------------------------------------------------------------------------------
# Values: numeric strings such as "1e-5" (PyYAML reads them as str) are numbers.
# ---------------------------------------------------------------------------------------------

@overload
def to_number(value: object, *, where: str, integer: Literal[True]) -> int: ...
@overload
def to_number(value: object, *, where: str, integer: bool = False) -> int | float: ...


def to_number(value: object, *, where: str, integer: bool = False) -> int | float:
    """A finite int/float from a number or a numeric string; integral floats become int if `integer`."""
    number = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        wanted = "an integer" if integer else "a finite number"
        raise AutoMLError(f"{where}: {value!r} is not a number (allowed: {wanted})")
    if integer:
        if float(number) != int(number):
            raise AutoMLError(f"{where}: {value!r} is not an integer (allowed: an integer)")
        return int(number)
    return number


def coerce_value(name: str, value: object, *, where: str) -> Any:
    """Validate `value` for canonical parameter `name` and return it normalized (numbers, layer lists)."""
    domain = DOMAINS[name]
    if value is None:
        if domain.nullable:
            return None
        raise AutoMLError(f"{where}: null is not allowed for {name} (allowed: {domain.allowed})")
    if domain.kind in ("float", "int"):
        value = to_number(value, where=where, integer=domain.kind == "int")
    elif domain.kind == "bool" and not isinstance(value, bool):
        raise AutoMLError(f"{where}: {value!r} is not a boolean (allowed: true, false)")
    elif domain.kind == "str" and not isinstance(value, str):
        raise AutoMLError(f"{where}: {value!r} is not a string (allowed: {domain.allowed})")
    elif domain.kind == "layers":
        if not isinstance(value, (list, tuple)):
            raise AutoMLError(f"{where}: {value!r} is not a list (allowed: {domain.allowed})")
        value = [to_number(v, where=where, integer=True) for v in value]
        if any(v < 1 for v in value):
            raise AutoMLError(f"{where}: {value!r} has a layer size < 1 (allowed: {domain.allowed})")
        return value
    if not domain.test(value):
        raise AutoMLError(f"{where}: {value!r} is out of range for {name} (allowed: {domain.allowed})")
    return value


def freeze(value: Any) -> Any:
    """Lists become tuples (hashable, for choices and priors); other values pass through."""
    return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def thaw(value: Any) -> Any:
    """Tuples become lists again (what users, YAML and SB3 expect)."""
    return [thaw(v) for v in value] if isinstance(value, tuple) else value

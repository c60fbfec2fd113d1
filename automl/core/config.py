"""Frozen run/space dataclasses, YAML validation and the one conversion of search coordinates (canonical
names) to SB3 PPO arguments (`to_ppo_setup`). Imports neither torch nor optuna: workers import it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from automl.core import constraints as _constraints
from automl.core.errors import AutoMLError
from automl.core.names import (ALIASES, CANONICAL_NAMES, DOMAINS, EXCLUSIVE, Domain, _near,  # noqa: F401 - re-exported
                          canonical_mapping, canonical_name, coerce_value, freeze, thaw, to_number)


REWARD_PREFIX = "reward."  # reward weights share the trial's params but are not PPO arguments

# SB3 2.x PPO defaults, written out so every PPOSetup is complete (tests compare with PPO's signature)
SB3_DEFAULTS: dict[str, Any] = {"learning_rate": 3e-4, "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "gamma": 0.99,
                "gae_lambda": 0.95, "clip_range": 0.2, "clip_range_vf": None, "ent_coef": 0.0, "vf_coef": 0.5,
                "max_grad_norm": 0.5, "target_kl": None}
# canonical name -> SB3 PPO(...) argument, for the parameters that map one to one
PPO_KWARGS = {c: a for a, c in ALIASES.items() if a != "net_arch"} | {
    "learning_rate": "learning_rate", "target_kl": "target_kl", "batch_size": "batch_size"}
DEFAULT_NUM_ENVS = 8


@dataclass(frozen=True)
class PPOSetup:
    """Everything needed to build one SB3 PPO run, converted from search coordinates."""

    ppo_kwargs: dict = field(default_factory=dict)  # SB3 PPO(...) kwargs, plain picklable values
    num_envs: int = 8
    n_timesteps: int | None = None
    normalize: bool = False
    learning_rate_schedule: str = "constant"  # constant | linear
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Search-space records and parsing.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamSpec:
    """One searchable parameter. For numeric types `choices` holds optional explicit grid values."""

    name: str
    type: str  # loguniform | uniform | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()  # list values stored as tuples
    prior: Any = None  # list priors stored as tuples; None = no prior
    grid_points: int | None = None

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric param: int, uniform and loguniform params always have both."""
        assert self.low is not None and self.high is not None, f"{self.name}: a {self.type} param without low/high"
        return self.low, self.high


@dataclass(frozen=True)
class SpaceSpec:
    """A validated search space: fixed values, searchable params and reject-constraints."""

    search_space_id: str
    path: str
    fixed: dict = field(default_factory=dict)  # canonical name -> value (lists stay lists)
    params: tuple[ParamSpec, ...] = ()
    constraints: tuple[str, ...] = ()

    def param(self, name: str) -> ParamSpec:
        """The searchable param called `name` (canonical), KeyError if absent."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical names of the searchable params, in file order."""
        return tuple(p.name for p in self.params)


TYPES = {"loguniform": "loguniform", "uniform": "uniform", "int": "int", "categorical": "categorical",
         "choice": "categorical"}
_NUMERIC_KEYS = {"type", "low", "high", "step", "log", "prior", "grid_points", "values"}
_PARAM_KEYS = {"loguniform": _NUMERIC_KEYS - {"step", "log"}, "uniform": _NUMERIC_KEYS, "int": _NUMERIC_KEYS,
               "categorical": {"type", "values", "choices", "prior"}}
SPACE_KEYS = ("search_space_id", "description", "fixed", "searchable", "constraints")


def _check_keys(raw: Mapping, allowed, *, where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise AutoMLError(f"{where}: unknown key {key!r}{_near(key, allowed)} (allowed: {', '.join(sorted(allowed))})")


def parse_param(name: str, raw: object, *, path: str, key: str = "searchable") -> ParamSpec:
    """Validate one searchable entry (canonical `name`) into a ParamSpec."""
    where = f"{path}: {key}.{name}"
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{where}: {raw!r} is not a mapping (allowed: {{type: ..., ...}} with type one of "
                          f"{', '.join(TYPES)})")
    ptype = raw.get("type")
    if ptype not in TYPES:
        problem = "missing type" if ptype is None else f"unknown type {ptype!r}{_near(ptype, TYPES)}"
        raise AutoMLError(f"{where}.type: {problem} (allowed: {', '.join(TYPES)})")
    ptype = TYPES[ptype]
    _check_keys(raw, _PARAM_KEYS[ptype], where=where)
    domain = DOMAINS[name]
    if ptype == "categorical":
        return _parse_categorical(name, raw, where=where)
    if domain.kind not in ("float", "int") or (domain.kind == "int" and ptype != "int"):
        allowed = "int, categorical" if domain.kind == "int" else "categorical"
        raise AutoMLError(f"{where}.type: {name} takes {domain.allowed}, so type {ptype} does not fit "
                          f"(allowed: {allowed})")
    return _parse_numeric(name, raw, ptype, where=where)


def _numeric(name: str, raw: Mapping, key: str, *, where: str, integer: bool):
    value = to_number(raw[key], where=f"{where}.{key}", integer=integer)
    return coerce_value(name, value, where=f"{where}.{key}")


def _parse_numeric(name: str, raw: Mapping, ptype: str, *, where: str) -> ParamSpec:
    integer = ptype == "int"
    for key in ("low", "high"):
        if key not in raw:
            raise AutoMLError(f"{where}: missing {key} (allowed: a {ptype} param needs low and high)")
    low, high = (_numeric(name, raw, k, where=where, integer=integer) for k in ("low", "high"))
    if not low < high:
        raise AutoMLError(f"{where}: low ({low}) must be < high ({high}) (allowed: low < high)")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise AutoMLError(f"{where}.log: {log!r} is not a boolean (allowed: true, false)")
    log = log or ptype == "loguniform"
    if log and low <= 0:
        raise AutoMLError(f"{where}.low: log scale needs low > 0, got {low} (allowed: 0 < low < high)")
    step = None
    if raw.get("step") is not None:
        step = to_number(raw["step"], where=f"{where}.step", integer=integer)
        if step <= 0 or log:
            raise AutoMLError(f"{where}.step: {step} is not usable (allowed: step > 0, and no step with log)")
        if integer and (high - low) % step:
            raise AutoMLError(f"{where}.step: high - low ({high - low}) is not a multiple of {step} "
                              f"(allowed: a step dividing high - low)")
    spec = ParamSpec(name, "loguniform" if log and not integer else ptype, low, high, step, log)
    return _with_grid_and_prior(spec, raw, where=where)


def _in_range(spec: ParamSpec, value) -> bool:
    if not spec.low <= value <= spec.high:
        return False
    return spec.step is None or abs(((value - spec.low) / spec.step) - round((value - spec.low) / spec.step)) < 1e-9


def _with_grid_and_prior(spec: ParamSpec, raw: Mapping, *, where: str) -> ParamSpec:
    integer = spec.type == "int"
    grid_points = raw.get("grid_points")
    values: tuple[Any, ...] = ()
    if grid_points is not None and "values" in raw:
        raise AutoMLError(f"{where}: both grid_points and values given (allowed: one of them)")
    if grid_points is not None:
        grid_points = to_number(grid_points, where=f"{where}.grid_points", integer=True)
        if grid_points < 2:
            raise AutoMLError(f"{where}.grid_points: {grid_points} (allowed: an integer >= 2)")
    if "values" in raw:
        items = raw["values"]
        if not isinstance(items, list) or not items:
            raise AutoMLError(f"{where}.values: {items!r} is not a non-empty list (allowed: grid values in [low, high])")
        values = tuple(_numeric(spec.name, {"v": v}, "v", where=f"{where}.values[{i}]", integer=integer)
                       for i, v in enumerate(items))
        bad = [v for v in values if not _in_range(spec, v)]
        if bad or len(set(values)) != len(values):
            raise AutoMLError(f"{where}.values: {list(values)} has duplicates or values off [{spec.low}, {spec.high}] "
                              f"(allowed: distinct values in [low, high] on the step)")
    prior = None
    if raw.get("prior") is not None:
        prior = _numeric(spec.name, raw, "prior", where=where, integer=integer)
        if not _in_range(spec, prior):
            raise AutoMLError(f"{where}.prior: {prior} is outside the range (allowed: [{spec.low}, {spec.high}]"
                              f"{f' on step {spec.step}' if spec.step else ''})")
    return ParamSpec(spec.name, spec.type, spec.low, spec.high, spec.step, spec.log, values, prior, grid_points)


def _parse_categorical(name: str, raw: Mapping, *, where: str) -> ParamSpec:
    if "values" in raw and "choices" in raw:
        raise AutoMLError(f"{where}: both values and choices given (allowed: one of them)")
    key = "choices" if "choices" in raw else "values"
    items = raw.get(key)
    if not isinstance(items, list) or not items:
        raise AutoMLError(f"{where}.{key}: {items!r} is not a non-empty list (allowed: a list of {DOMAINS[name].allowed})")
    choices = tuple(freeze(coerce_value(name, v, where=f"{where}.{key}[{i}]")) for i, v in enumerate(items))
    if len(set(map(repr, choices))) != len(choices):
        raise AutoMLError(f"{where}.{key}: {items!r} has duplicates (allowed: distinct choices)")
    prior = None
    if "prior" in raw:
        prior = freeze(coerce_value(name, raw["prior"], where=f"{where}.prior"))
        if prior not in choices:
            raise AutoMLError(f"{where}.prior: {thaw(prior)!r} is not one of the choices "
                              f"(allowed: {', '.join(repr(thaw(c)) for c in choices)})")
    return ParamSpec(name, "categorical", choices=choices, prior=prior)


def parse_params(raw: object, *, path: str, key: str = "searchable") -> tuple[ParamSpec, ...]:
    """Validate a `searchable` mapping (either naming style) into ParamSpecs, in file order."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{path}: {key}: {type(raw).__name__} is not a mapping (allowed: name: {{type: ...}})")
    named = canonical_mapping(raw, path=path, key=key)
    return tuple(parse_param(name, spec, path=path, key=key) for name, spec in named.items())


def parse_fixed(raw: object, *, path: str, key: str = "fixed") -> dict:
    """Validate a `fixed` mapping into {canonical name: value}."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{path}: {key}: {type(raw).__name__} is not a mapping (allowed: name: value)")
    named = canonical_mapping(raw, path=path, key=key)
    return {name: coerce_value(name, value, where=f"{path}: {key}.{name}") for name, value in named.items()}


def check_names(fixed: Mapping, params, *, path: str) -> None:
    """A param is fixed or searchable, not both; exclusive pairs (mini_batches/batch_size) not together."""
    searchable = {p.name for p in params}
    for name in fixed:
        if name in searchable:
            raise AutoMLError(f"{path}: fixed.{name}: also searchable (allowed: a parameter in fixed OR searchable)")
    present = searchable | set(fixed)
    for a, b in EXCLUSIVE:
        if a in present and b in present:
            raise AutoMLError(f"{path}: {b}: given together with {a}, which derives it "
                              f"(allowed: one of {a}, {b})")


def parse_constraints(raw: object, names, *, path: str) -> tuple[str, ...]:
    """Check constraint strings against the grammar and the names of this space (fixed + searchable)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise AutoMLError(f"{path}: constraints: {type(raw).__name__} is not a list (allowed: a list of strings)")
    names = set(names)
    resolve = {n: n for n in names} | {a: c for a, c in ALIASES.items() if c in names}
    numeric = {n for n in names if DOMAINS[n].kind in ("float", "int", "bool")}
    for i, expr in enumerate(raw):
        _constraints.check(expr, where=f"{path}: constraints[{i}]", resolve=resolve, numeric=numeric)
    return tuple(e.strip() for e in raw)


def parse_space(mapping: object, path: str) -> SpaceSpec:
    """Validate a loaded YAML document as a search space."""
    path = str(path)
    if not isinstance(mapping, Mapping):
        raise AutoMLError(f"{path}: top level: {type(mapping).__name__} is not a mapping "
                          f"(allowed: a mapping with keys {', '.join(SPACE_KEYS)})")
    _check_keys(mapping, SPACE_KEYS, where=f"{path}: top level")
    sid = mapping.get("search_space_id")
    if sid is None:
        raise AutoMLError(f"{path}: search_space_id: missing (allowed: a space needs an id; a file without one "
                          f"is read as a preset, e.g. `--preset {path}`)")
    if not isinstance(sid, str) or not sid.strip():
        raise AutoMLError(f"{path}: search_space_id: {sid!r} is not a non-empty string (allowed: a name)")
    if not isinstance(mapping.get("description", ""), str):
        raise AutoMLError(f"{path}: description: not a string (allowed: text)")
    fixed = parse_fixed(mapping.get("fixed"), path=path)
    params = parse_params(mapping.get("searchable"), path=path)
    check_names(fixed, params, path=path)
    cons = parse_constraints(mapping.get("constraints"), [*fixed, *(p.name for p in params)], path=path)
    return SpaceSpec(sid.strip(), path, fixed, params, cons)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


A_MAPPING = "a YAML mapping of keys to values"
SPACE_ALLOWED = f"a search-space mapping with keys {', '.join(SPACE_KEYS)}"


def load_yaml(path, *, allowed: str = A_MAPPING) -> dict:
    """Read a UTF-8 YAML file whose top level is a mapping; AutoMLError for a missing file, bad bytes,
    bad YAML, duplicate keys, an empty document (nothing, blanks or only comments) or another top level.

    ``allowed`` says in the message what the file should hold.
    """
    p = Path(path)
    if not p.is_file():
        problem = "is a directory" if p.is_dir() else "does not exist"
        raise AutoMLError(f"{p}: file: {problem} (allowed: a readable YAML file)")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AutoMLError(f"{p}: file: not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}) "
                          f"(allowed: UTF-8 text)") from None
    if not text.strip():  # before parsing: PyYAML refuses a tab even in a blank file
        raise AutoMLError(f"{p}: file: empty (allowed: {allowed})")
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "file"
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise AutoMLError(f"{p}: {where}: invalid YAML: {problem} (allowed: YAML syntax)") from None
    if loaded is None:  # PyYAML reads a comment-only file (and a bare `null`) as None
        raise AutoMLError(f"{p}: file: empty (only comments or null) (allowed: {allowed})")
    if not isinstance(loaded, Mapping):
        raise AutoMLError(f"{p}: top level: {type(loaded).__name__} is not a mapping (allowed: {allowed})")
    return cast(dict, loaded)  # a SafeLoader builds every mapping as a dict


def load_space(path) -> SpaceSpec:
    """Load and validate a search-space YAML file."""
    return parse_space(load_yaml(path, allowed=SPACE_ALLOWED), str(path))


# ---------------------------------------------------------------------------------------------
# The one conversion to SB3.
# ---------------------------------------------------------------------------------------------

def _batch_size(named: Mapping, n_steps: int, num_envs: int, path: str) -> int:
    """batch_size from mini_batches: the rollout buffer must split exactly (no silent truncation)."""
    mini_batches, total = named["mini_batches"], n_steps * num_envs
    if total % mini_batches:
        divisors = [d for d in range(1, min(total, 4096) + 1) if total % d == 0]
        near = sorted(divisors, key=lambda d: abs(d - mini_batches))[:3]
        raise AutoMLError(f"{path}: mini_batches: {mini_batches} does not divide n_steps*num_envs = "
                          f"{n_steps}*{num_envs} = {total} (allowed: a divisor of {total}, e.g. {sorted(near)})")
    if total // mini_batches < 2:
        raise AutoMLError(f"{path}: mini_batches: {mini_batches} leaves batches of {total // mini_batches} "
                          f"sample (allowed: at most {total // 2})")
    return total // mini_batches


def to_ppo_setup(params: Mapping, *, path: str = "<params>") -> PPOSetup:
    """Canonical (or SB3-named) params -> PPOSetup with complete SB3 PPO kwargs; the ONLY such conversion."""
    named = canonical_mapping({k: v for k, v in params.items() if not str(k).startswith(REWARD_PREFIX)},
                              path=path, key="params")
    named = {k: coerce_value(k, v, where=f"{path}: {k}") for k, v in named.items()}
    for a, b in EXCLUSIVE:
        if a in named and b in named:
            raise AutoMLError(f"{path}: {b}: given together with {a}, which derives it (allowed: one of {a}, {b})")
    kwargs = dict(SB3_DEFAULTS)
    kwargs.update({sb3: named[c] for c, sb3 in PPO_KWARGS.items() if c in named})
    num_envs = named.get("num_envs", DEFAULT_NUM_ENVS)
    if kwargs["n_steps"] * num_envs < 2:
        raise AutoMLError(f"{path}: rollouts: n_steps*num_envs = {kwargs['n_steps'] * num_envs} "
                          f"(allowed: at least 2, PPO needs two samples)")
    if "mini_batches" in named:
        kwargs["batch_size"] = _batch_size(named, kwargs["n_steps"], num_envs, path)
    if "policy_hidden_layer_sizes" in named:
        layers = list(named["policy_hidden_layer_sizes"])
        kwargs["policy_kwargs"] = {"net_arch": {"pi": layers, "vf": list(layers)}}
    return PPOSetup(ppo_kwargs=kwargs, num_envs=num_envs, n_timesteps=named.get("n_timesteps"),
                    normalize=named.get("normalize", False),
                    learning_rate_schedule=named.get("learning_rate_schedule", "constant"),
                    seed=named.get("seed"))

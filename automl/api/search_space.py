"""SearchSpace: a declarative search space built in code, sampled through automl.search.space.

It holds an ``automl.core.config.SpaceSpec`` (searchable ParamSpecs, fixed values, reject-constraints),
so sampling, encoding of list choices and grids go through the same ``space.py`` as the CLI.
Conditional sub-spaces are suggested only when their condition holds over the values sampled so far.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from automl.core import constraints
from automl.search import space
from automl.core.config import ParamSpec, SpaceSpec, load_space
from automl.core.errors import AutoMLError
from automl.core.names import freeze, thaw

Condition = str | Callable[[dict], bool]
MAX_REJECTIONS = 100  # sample(): draws before giving up on a space whose constraints reject everything


class _hybrid:
    """A method usable on the class (builds a new SearchSpace) or on an instance (adds to it)."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        return functools.partial(self.func, obj if obj is not None else cls())


class SearchSpace:
    """Search space: add_float / add_int / add_categorical / add_fixed / add_conditional, then sample()."""

    def __init__(self, name: str = "search_space"):
        self.name = name
        self._params: list[ParamSpec] = []
        self._fixed: dict[str, Any] = {}
        self._constraints: list[str] = []
        self._conditionals: list[tuple[str, Condition, SearchSpace]] = []
        self._sampler_study: optuna.Study | None = None

    # ------------------------------------------------------------------ building
    def _where(self, method: str, name: object) -> str:
        return f"SearchSpace {self.name!r}: {method}({name!r})"

    def _check_new(self, method: str, name: object) -> None:
        if not isinstance(name, str) or not name:
            raise AutoMLError(f"{self._where(method, name)}: name is not a non-empty string (allowed: a name)")
        if name in self.all_names or name in self._fixed:
            raise AutoMLError(f"{self._where(method, name)}: already defined (allowed: unique names)")

    def _check_range(self, method: str, name: str, low, high, log: bool, integer: bool) -> None:
        kind = (int,) if integer else (int, float)
        for v in (low, high):
            if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v):
                raise AutoMLError(f"{self._where(method, name)}: bound {v!r} is not a finite "
                                  f"{'integer' if integer else 'number'} (allowed: low < high)")
        if not low < high:
            raise AutoMLError(f"{self._where(method, name)}: low ({low}) must be < high ({high}) (allowed: low < high)")
        if log and low <= 0:
            raise AutoMLError(f"{self._where(method, name)}: log scale needs low > 0, got {low} (allowed: 0 < low)")

    def add_float(self, name: str, low: float, high: float, log: bool = False, step: float | None = None):
        """A float in [low, high] (log-uniform with log=True; on a grid of `step` if given). Returns self."""
        self._check_new("add_float", name)
        self._check_range("add_float", name, low, high, log, integer=False)
        if step is not None and (log or step <= 0):
            raise AutoMLError(f"{self._where('add_float', name)}: step {step!r} (allowed: step > 0 without log)")
        self._params.append(ParamSpec(name, "loguniform" if log else "uniform", float(low), float(high),
                                      step=step, log=bool(log)))
        return self

    def add_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False):
        """An integer in [low, high] (inclusive, on `step`). Returns self."""
        self._check_new("add_int", name)
        self._check_range("add_int", name, low, high, log, integer=True)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1 or (high - low) % step or (log and step != 1):
            raise AutoMLError(f"{self._where('add_int', name)}: step {step!r} (allowed: an integer >= 1 dividing "
                              f"high - low; 1 with log)")
        self._params.append(ParamSpec(name, "int", low, high, step=step if step != 1 else None, log=bool(log)))
        return self

    def add_categorical(self, name: str, choices: list):
        """One of `choices` (numbers, strings, bools, None, or lists such as layer sizes). Returns self."""
        self._check_new("add_categorical", name)
        if not isinstance(choices, (list, tuple)) or not choices:
            raise AutoMLError(f"{self._where('add_categorical', name)}: choices {choices!r} (allowed: a non-empty list)")
        frozen = tuple(freeze(c) for c in choices)
        if any(isinstance(c, (dict, set)) for c in frozen):
            raise AutoMLError(f"{self._where('add_categorical', name)}: a dict/set choice (allowed: numbers, "
                              f"strings, bools, None, lists)")
        if len({repr(space.encode_choice(c)) for c in frozen}) != len(frozen):
            raise AutoMLError(f"{self._where('add_categorical', name)}: duplicate choices (allowed: distinct choices)")
        self._params.append(ParamSpec(name, "categorical", choices=frozen))
        return self

    def add_fixed(self, name: str, value: Any):
        """A value passed to every trial unchanged (not searched). Returns self."""
        self._check_new("add_fixed", name)
        self._fixed[name] = value
        return self

    def add_constraint(self, expr: str):
        """Reject combinations where `expr` holds (safe expression over numeric params, as in space YAML)."""
        constraints.parse(expr, where=f"SearchSpace {self.name!r}: add_constraint")
        self._constraints.append(expr.strip())
        return self

    def add_conditional(self, name: str, condition: Condition, space: SearchSpace):
        """Sub-space `space` (named `name`) sampled only when `condition` holds over the values drawn so far.

        condition: a safe expression ("use_lstm == 1 and n_layers > 2") over numeric/bool params, or a
        callable(params) -> bool. The sub-space's params join the trial's params under their own names.
        """
        if not isinstance(space, SearchSpace):
            raise AutoMLError(f"{self._where('add_conditional', name)}: space is {type(space).__name__} "
                              f"(allowed: a SearchSpace)")
        if isinstance(condition, str):
            tree = constraints.parse(condition, where=self._where("add_conditional", name))
            known = set(self.all_names) | set(self._fixed)
            unknown = [n for n in constraints.names(tree) if n not in known]
            if unknown:
                raise AutoMLError(f"{self._where('add_conditional', name)}: condition names {', '.join(unknown)}, "
                                  f"not defined before it (allowed: {', '.join(sorted(known)) or 'none'})")
        elif not callable(condition):
            raise AutoMLError(f"{self._where('add_conditional', name)}: condition {condition!r} "
                              f"(allowed: an expression string or a callable(params) -> bool)")
        clash = (set(space.all_names) | set(space._fixed)) & (set(self.all_names) | set(self._fixed))
        if clash:
            raise AutoMLError(f"{self._where('add_conditional', name)}: {', '.join(sorted(clash))} already defined "
                              f"(allowed: unique names across sub-spaces)")
        self._conditionals.append((name, condition, space))
        return self

    # ------------------------------------------------------------------ other sources
    @_hybrid
    def from_config_class(self, config_cls: type, overrides: Mapping | None = None) -> SearchSpace:
        """Space over a dataclass's fields: each field in `overrides` is searched, the others fixed at their default.

        An override is (low, high) or (low, high, "log") for a range (int when the field is int),
        a list for choices, or any other value to fix the field. Returns the space.
        """
        if not dataclasses.is_dataclass(config_cls):
            raise AutoMLError(f"SearchSpace.from_config_class: {config_cls!r} is not a dataclass (allowed: a dataclass)")
        fields = {f.name: f for f in dataclasses.fields(config_cls)}
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise AutoMLError(f"SearchSpace.from_config_class: {config_cls.__name__}: unknown field(s) "
                              f"{', '.join(unknown)} (allowed: {', '.join(fields)})")
        hints = _type_hints(config_cls)
        for name, f in fields.items():
            if name in overrides:
                self._add_override(name, overrides[name], hints.get(name))
            elif f.default is not dataclasses.MISSING:
                self.add_fixed(name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                self.add_fixed(name, f.default_factory())
        return self

    def _add_override(self, name: str, value: Any, hint: Any) -> None:
        if isinstance(value, list):
            self.add_categorical(name, value)
        elif isinstance(value, tuple) and len(value) in (2, 3) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
            log = len(value) == 3 and value[2] == "log"
            integer = hint is int or (hint is not float and all(isinstance(v, int) for v in value[:2]))
            adder = self.add_int if integer else self.add_float
            adder(name, value[0], value[1], log=log)
        else:
            self.add_fixed(name, value)

    @classmethod
    def from_spec(cls, spec: SpaceSpec) -> SearchSpace:
        """A SearchSpace over a SpaceSpec (e.g. from automl.core.config.load_space)."""
        out = cls(spec.search_space_id)
        out._params = list(spec.params)
        out._fixed = {k: v for k, v in spec.fixed.items()}
        out._constraints = list(spec.constraints)
        return out

    @classmethod
    def from_yaml(cls, path) -> SearchSpace:
        """A SearchSpace from a search-space YAML file: the CLI's schema (fixed, searchable, constraints), or
        seed 003's ``hyperparameter_optimization:`` file over any names (automl.api.seed003; its engine
        settings: SearchConfig.from_yaml)."""
        from automl.api.seed003_file import add_params, parse_file
        from automl.core.seed003 import KEY

        hpo = parse_file(path, strict=False)
        return add_params(cls(KEY), hpo) if hpo is not None else cls.from_spec(load_space(path))

    def to_dict(self) -> dict:
        """A JSON-safe description (the study keeps it for resume); a callable condition cannot be stored."""
        subs = []
        for name, condition, sub in self._conditionals:
            if not isinstance(condition, str):
                raise AutoMLError(f"SearchSpace {self.name!r}: the condition of {name!r} is a callable, which a "
                                  f"study cannot store (allowed: an expression string)")
            subs.append({"name": name, "condition": condition, "space": sub.to_dict()})
        params = [{k: thaw(v) for k, v in dataclasses.asdict(p).items()} for p in self._params]
        return {"name": self.name, "params": params, "fixed": {k: thaw(v) for k, v in self._fixed.items()},
                "constraints": list(self._constraints), "conditionals": subs}

    @classmethod
    def from_dict(cls, data: Mapping) -> SearchSpace:
        """The space ``to_dict`` described."""
        out = cls(data["name"])
        out._params = [ParamSpec(**{**p, "choices": tuple(freeze(c) for c in p.get("choices") or ()),
                                    "prior": freeze(p.get("prior"))}) for p in data.get("params", [])]
        out._fixed = dict(data.get("fixed") or {})
        out._constraints = list(data.get("constraints") or [])
        out._conditionals = [(c["name"], c["condition"], cls.from_dict(c["space"])) for c in data.get("conditionals") or []]
        return out

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        """Searched params of this space (not its sub-spaces), in order."""
        return tuple(p.name for p in self._params)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Searched params including every conditional sub-space."""
        return self.names + tuple(n for _, _, sub in self._conditionals for n in sub.all_names)

    @property
    def fixed(self) -> dict:
        """The fixed values every trial receives."""
        return dict(self._fixed)

    @property
    def spec(self) -> SpaceSpec:
        """This space (without sub-spaces) as an automl.core.config.SpaceSpec."""
        return SpaceSpec(self.name, f"<SearchSpace {self.name}>", dict(self._fixed), tuple(self._params),
                         tuple(self._constraints))

    @property
    def has_conditionals(self) -> bool:
        """True when some sub-space is conditional."""
        return bool(self._conditionals)

    def distributions(self) -> dict:
        """Optuna distributions of every searched param, sub-spaces included (via automl.search.space)."""
        out = space.distributions(self.spec)
        for _, _, sub in self._conditionals:
            out.update(sub.distributions())
        return out

    def __len__(self) -> int:
        return len(self.all_names)

    def __repr__(self) -> str:
        subs = ", ".join(f"{n} if {c if isinstance(c, str) else 'callable'}" for n, c, _ in self._conditionals)
        return f"SearchSpace({self.name!r}, params={list(self.names)}, fixed={list(self._fixed)}" + \
            (f", conditional=[{subs}])" if subs else ")")

    # ------------------------------------------------------------------ sampling
    def holds(self, condition: Condition, values: Mapping, name: str = "") -> bool:
        """Whether a conditional sub-space is active for `values`."""
        if callable(condition):
            return bool(condition(dict(values)))
        return constraints.evaluate(condition, values, where=self._where("add_conditional", name))

    def suggest(self, trial: optuna.Trial) -> dict:
        """Sample one config on an Optuna trial: fixed values, searched params, then active sub-spaces."""
        values = {**self._fixed, **space.suggest(trial, self.spec)}
        for name, condition, sub in self._conditionals:
            if self.holds(condition, values, name):
                values.update(sub.suggest(trial))
        return values

    def violated(self, params: Mapping) -> list[str]:
        """The constraints (of this space and active sub-spaces) that reject `params`."""
        out = [c for i, c in enumerate(self._constraints) if constraints.evaluate(
            c, params, where=f"SearchSpace {self.name!r}: constraints[{i}]")]
        for name, condition, sub in self._conditionals:
            if self.holds(condition, params, name):
                out += sub.violated(params)
        return out

    def sample(self, seed: int | None = None) -> dict:
        """One random config (constraints respected); seed= gives a reproducible draw."""
        if seed is not None or self._sampler_study is None:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
            if seed is not None:
                return self._draw(study)
            self._sampler_study = study
        return self._draw(self._sampler_study)

    def _draw(self, study: optuna.Study) -> dict:
        for _ in range(MAX_REJECTIONS):
            trial = study.ask()
            params = self.suggest(trial)
            study.tell(trial, 0.0)
            if not self.violated(params):
                return params
        raise AutoMLError(f"SearchSpace {self.name!r}: constraints rejected {MAX_REJECTIONS} draws in a row "
                          f"(allowed: constraints that leave part of the space)")


def _type_hints(config_cls: type) -> dict:
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # unresolvable forward references: fall back to the values' own types
        return {}

"""Presets (quick / full / fine-tune): named edits applied to a base search space.

The schema is documented at the top of configs/presets/quick.yaml. A preset never needs
a search_space_id: the seed's snippets (a bare `searchable:` block, or bare `name: {type: ...}`
entries) load as presets, and `{}` is the preset that changes nothing (an empty file is an error).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from automl.core import config
from automl.core import constraints as _constraints
from automl.core import seed003
from automl.core.config import EXCLUSIVE, ParamSpec, SpaceSpec
from automl.core.errors import AutoMLError
from automl.core.names import SEARCH_METHODS

PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"
PRESET_KEYS = ("preset", "description", "mode", "narrow", "searchable", "fixed", "constraints", "run_defaults")
NARROW_DEFAULTS = {"log_factor": 3.0, "linear_fraction": 0.25, "neighbours": 1}
RUN_DEFAULT_KEYS = ("hp_trials", "seeds", "trial_steps_fraction", "search_method")
PRESET_ALLOWED = f"a preset mapping with keys {', '.join(PRESET_KEYS)}, or parameter entries; {{}} changes nothing"


@dataclass(frozen=True)
class Preset:
    """A validated preset: how to edit a base space, plus run defaults the driver may use."""

    name: str
    path: str
    mode: str = "override"  # override | only | narrow
    searchable: tuple[ParamSpec, ...] = ()
    fixed: dict = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    narrow: dict = field(default_factory=lambda: dict(NARROW_DEFAULTS))
    run_defaults: dict = field(default_factory=dict)  # optional: hp_trials, seeds, trial_steps_fraction, search_method
    description: str = ""
    centre: dict = field(default_factory=dict)  # an earlier run's best params (--from RUN_DIR): the centre, not the priors


def preset_names() -> list[str]:
    """Names of the presets shipped in configs/presets/."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_preset_path(name_or_path: str | Path) -> Path:
    """A preset name (configs/presets/<name>.yaml) or a path to a YAML file."""
    text = str(name_or_path)
    if Path(text).suffix in (".yaml", ".yml") or "/" in text or Path(text).is_file():
        return Path(text)
    path = PRESETS_DIR / f"{text}.yaml"
    if not path.is_file():
        hint = config._near(text, preset_names())
        raise AutoMLError(f"command line: --preset: unknown preset {text!r}{hint} "
                          f"(allowed: {', '.join(preset_names())} or a path to a YAML file)")
    return path


FROM = "@"  # PRESET@RUN_DIR: the preset centred on that run's best config (`--preset fine-tune --from RUN_DIR`)


def centred_on(preset: str | None, run_dir: str) -> str:
    """``--preset P --from RUN_DIR`` as the one preset spelling a run records (``P@RUN_DIR``); checks that
    the run dir has a best config (AutoMLError: one line)."""
    if not preset:
        raise AutoMLError("command line: --from: needs --preset (allowed: e.g. --preset fine-tune --from RUN_DIR)")
    run_best(run_dir)
    return f"{preset}{FROM}{run_dir}"


def run_best(run_dir: str | Path) -> dict:
    """The params of an earlier run's winner (``RUN_DIR/best.yaml``, or a best.yaml given directly)."""
    path = Path(run_dir)
    path = path if path.suffix in (".yaml", ".yml") else path / "best.yaml"
    if not path.is_file():
        raise AutoMLError(f"command line: --from: {path}: does not exist (allowed: the run dir of a finished "
                          "`automl run`, which holds best.yaml)")
    raw = config.load_yaml(path, allowed="a best.yaml written by `automl run`")
    params = raw.get("params") if isinstance(raw, Mapping) else None
    if not isinstance(params, Mapping) or not params:
        raise AutoMLError(f"{path}: params: missing (allowed: a best.yaml written by `automl run`)")
    return dict(params)


def load_preset(name_or_path: str | Path) -> Preset:
    """Load and validate a preset by name or path (AutoMLError on any malformed input); ``NAME@RUN_DIR``:
    centred on that run's best config instead of the space's priors."""
    name, sep, run_dir = str(name_or_path).partition(FROM)
    if sep and not Path(str(name_or_path)).is_file():
        return dataclasses.replace(load_preset(name), centre=run_best(run_dir))
    path = resolve_preset_path(name_or_path)
    raw = config.load_yaml(path, allowed=PRESET_ALLOWED)
    if seed003.is_hpo(raw):  # seed 003's config file (automl run --config): its space, the rest at the priors
        raw = seed003.preset_mapping(seed003.parse(raw, str(path)))
    return parse_preset(raw, str(path))


def _as_structured(raw: object, path: str) -> dict:
    """The seed's snippets: bare {param: spec} -> {searchable: ...}; None (an empty file) is an error."""
    if raw is None:
        raise AutoMLError(f"{path}: file: empty (allowed: {PRESET_ALLOWED})")
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{path}: top level: {type(raw).__name__} is not a mapping (allowed: {PRESET_ALLOWED})")
    if "search_space_id" in raw:
        raise AutoMLError(f"{path}: search_space_id: this is a search space, not a preset "
                          f"(allowed: use it with --space; presets have keys {', '.join(PRESET_KEYS)})")
    if any(k in PRESET_KEYS for k in raw):
        config._check_keys(raw, PRESET_KEYS, where=f"{path}: top level")
        return dict(raw)
    spellings = {*config.CANONICAL_NAMES, *config.ALIASES}
    for key in raw:
        if key not in spellings:
            raise AutoMLError(f"{path}: top level: unknown key {key!r}{config._near(key, [*PRESET_KEYS, *spellings])} "
                              f"(allowed: {', '.join(PRESET_KEYS)}, or parameter entries)")
    return {"searchable": dict(raw)}


def _number_in(value, where: str, low: float, high: float, *, integer: bool = False, open_low: bool = True):
    number = config.to_number(value, where=where, integer=integer)
    if not ((low < number) if open_low else (low <= number)) or number > high:
        bracket = "(" if open_low else "["
        raise AutoMLError(f"{where}: {number} is out of range (allowed: {bracket}{low}, {high}])")
    return number


def _parse_run_defaults(raw: object, path: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AutoMLError(f"{path}: run_defaults: not a mapping (allowed: keys {', '.join(RUN_DEFAULT_KEYS)})")
    config._check_keys(raw, RUN_DEFAULT_KEYS, where=f"{path}: run_defaults")
    out = {}
    for key in ("hp_trials", "seeds"):
        if key in raw:
            out[key] = _number_in(raw[key], f"{path}: run_defaults.{key}", 1, math.inf, integer=True, open_low=False)
    if "trial_steps_fraction" in raw:
        out["trial_steps_fraction"] = _number_in(raw["trial_steps_fraction"],
                                                 f"{path}: run_defaults.trial_steps_fraction", 0, 1)
    if "search_method" in raw:
        if raw["search_method"] not in SEARCH_METHODS:
            raise AutoMLError(f"{path}: run_defaults.search_method: unknown {raw['search_method']!r} "
                              f"(allowed: {', '.join(SEARCH_METHODS)})")
        out["search_method"] = raw["search_method"]
    return out


def _parse_narrow(raw: object, mode: str, path: str) -> dict:
    if raw is None:
        return dict(NARROW_DEFAULTS)
    if mode != "narrow" or not isinstance(raw, Mapping):
        raise AutoMLError(f"{path}: narrow: needs mode: narrow and a mapping (allowed: keys {', '.join(NARROW_DEFAULTS)})")
    config._check_keys(raw, NARROW_DEFAULTS, where=f"{path}: narrow")
    out = dict(NARROW_DEFAULTS)
    if "log_factor" in raw:
        out["log_factor"] = _number_in(raw["log_factor"], f"{path}: narrow.log_factor", 1, math.inf)
    if "linear_fraction" in raw:
        out["linear_fraction"] = _number_in(raw["linear_fraction"], f"{path}: narrow.linear_fraction", 0, 1)
    if "neighbours" in raw:
        out["neighbours"] = _number_in(raw["neighbours"], f"{path}: narrow.neighbours", 0, math.inf,
                                       integer=True, open_low=False)
    return out


def parse_preset(raw: object, path: str) -> Preset:
    """Validate a loaded preset document (see the schema in configs/presets/quick.yaml)."""
    data = _as_structured(raw, path)
    name = data.get("preset", Path(path).stem)
    mode = data.get("mode", "override")
    if mode not in APPLY:
        raise AutoMLError(f"{path}: mode: unknown {mode!r}{config._near(mode, APPLY)} (allowed: {', '.join(APPLY)})")
    for key in ("preset", "description"):
        if not isinstance(data.get(key, ""), str):
            raise AutoMLError(f"{path}: {key}: not a string (allowed: text)")
    searchable = config.parse_params(data.get("searchable"), path=path)
    fixed = config.parse_fixed(data.get("fixed"), path=path)
    config.check_names(fixed, searchable, path=path)
    cons = data.get("constraints") or []
    if not isinstance(cons, list):
        raise AutoMLError(f"{path}: constraints: not a list (allowed: a list of expression strings)")
    for i, expr in enumerate(cons):
        _constraints.parse(expr, where=f"{path}: constraints[{i}]")  # names are checked against the base space
    return Preset(str(name), path, mode, searchable, fixed, tuple(c.strip() for c in cons),
                  _parse_narrow(data.get("narrow"), mode, path), _parse_run_defaults(data.get("run_defaults"), path),
                  data.get("description", ""))


# ---------------------------------------------------------------------------------------------
# Applying a preset to a base space.
# ---------------------------------------------------------------------------------------------

def fits(param: ParamSpec, value) -> bool:
    """Whether `value` (frozen form) lies in the param's domain: choices, or range and step."""
    if value is None:
        return False
    if param.type == "categorical":
        return value in param.choices
    if isinstance(value, (bool, tuple, str)) or (param.type == "int" and value != int(value)):
        return False
    return config._in_range(param, value)


def _centres(spec: SpaceSpec, best_params: Mapping | None) -> dict:
    """Per searchable param: the best config's value if given (clipped into range), else the prior."""
    centres = {p.name: p.prior for p in spec.params}
    if not best_params:
        return centres
    best = {k: v for k, v in best_params.items() if not str(k).startswith("reward.")}
    named = config.canonical_mapping(best, path=spec.path, key="best_params")
    for p in spec.params:
        if p.name in named:
            value = config.freeze(config.coerce_value(p.name, named[p.name], where=f"{spec.path}: best_params.{p.name}"))
            if p.type != "categorical" and value is not None:
                value = min(max(value, p.low), p.high)
            centres[p.name] = value
    return centres


def _apply_override(spec: SpaceSpec, preset: Preset, centres: dict) -> tuple[list, dict]:
    params = [dataclasses.replace(p, prior=centres[p.name] if fits(p, centres[p.name]) else p.prior)
              for p in spec.params]
    return params, dict(spec.fixed)


def _apply_only(spec: SpaceSpec, preset: Preset, centres: dict) -> tuple[list, dict]:
    searched = {p.name for p in preset.searchable} | set(preset.fixed)
    fixed, params = dict(spec.fixed), []
    for p in spec.params:
        if p.name in searched:
            params.append(p)
        elif centres[p.name] is None:
            raise AutoMLError(f"{preset.path}: mode: 'only' fixes {p.name} at its prior, but {spec.path} gives it "
                              f"none (allowed: add a prior in the space, or list {p.name} in the preset)")
        else:
            fixed[p.name] = config.thaw(centres[p.name])
    return params, fixed


def _narrow_categorical(p: ParamSpec, centre, neighbours: int) -> ParamSpec:
    if centre in p.choices:
        index = p.choices.index(centre)
    elif all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p.choices) and \
            isinstance(centre, (int, float)):
        index = min(range(len(p.choices)), key=lambda i: abs(p.choices[i] - centre))
    else:
        raise AutoMLError(f"best_params: {p.name}: {config.thaw(centre)!r} is not one of the choices "
                          f"(allowed: {', '.join(repr(config.thaw(c)) for c in p.choices)})")
    kept = p.choices[max(0, index - neighbours): index + neighbours + 1]
    return dataclasses.replace(p, choices=kept, prior=p.choices[index])


def _narrow_numeric(p: ParamSpec, centre, settings: dict) -> ParamSpec:
    p_low, p_high = p.bounds()
    if p.log:
        low, high = centre / settings["log_factor"], centre * settings["log_factor"]
    else:
        width = settings["linear_fraction"] * (p_high - p_low)
        low, high = centre - width, centre + width
    if p.type == "int":  # widen to whole steps so the centre stays on the grid
        step = p.step or 1
        low = p_low + math.floor((low - p_low) / step) * step
        high = p_low + math.ceil((high - p_low) / step) * step
    low, high = max(p_low, low), min(p_high, high)
    if not low < high:
        return dataclasses.replace(p, prior=centre)
    if p.type != "int":
        low, high = float(f"{low:.6g}"), float(f"{high:.6g}")  # readable bounds, still around the centre
        low, high = min(low, centre), max(high, centre)
    values = tuple(v for v in p.choices if low <= v <= high)
    return dataclasses.replace(p, low=low, high=high, choices=values, prior=centre)


def _apply_narrow(spec: SpaceSpec, preset: Preset, centres: dict) -> tuple[list, dict]:
    params = []
    for p in spec.params:
        centre = centres[p.name]
        if centre is None:
            params.append(p)
        elif p.type == "categorical":
            params.append(_narrow_categorical(p, centre, preset.narrow["neighbours"]))
        else:
            params.append(_narrow_numeric(p, centre, preset.narrow))
    return params, dict(spec.fixed)


APPLY = {"override": _apply_override, "only": _apply_only, "narrow": _apply_narrow}


def _drop(params: list, fixed: dict, names: set) -> tuple[list, dict]:
    """Remove `names` and their exclusive partners (mini_batches <-> batch_size) from the base."""
    partners = {b for a, b in EXCLUSIVE if a in names} | {a for a, b in EXCLUSIVE if b in names}
    gone = names | partners
    return [p for p in params if p.name not in gone], {k: v for k, v in fixed.items() if k not in gone}


def apply_preset(spec: SpaceSpec, preset: Preset, best_params: Mapping | None = None) -> SpaceSpec:
    """The base space edited by the preset; `best_params` (a found config; else the preset's own centre from
    --from RUN_DIR) replaces the priors as centre."""
    centres = _centres(spec, best_params if best_params is not None else preset.centre)
    params, fixed = APPLY[preset.mode](spec, preset, centres)
    base_by_name = {p.name: p for p in spec.params}
    added = []
    for p in preset.searchable:
        base = base_by_name.get(p.name)
        centre = centres.get(p.name, config.freeze(spec.fixed.get(p.name)))
        prior = next((v for v in (p.prior, centre, base.prior if base else None) if fits(p, v)), None)
        added.append(dataclasses.replace(p, prior=prior))
    params, fixed = _drop(params, fixed, {p.name for p in added} | set(preset.fixed))
    by_name = {p.name: p for p in params} | {p.name: p for p in added}
    order = [p.name for p in spec.params if p.name in by_name] + [p.name for p in added if p.name not in base_by_name]
    params = [by_name[n] for n in order]
    fixed.update(preset.fixed)
    where = f"{preset.path} on {spec.path}"
    cons = config.parse_constraints([*spec.constraints, *preset.constraints], [*fixed, *by_name], path=where)
    return SpaceSpec(f"{spec.search_space_id}+{preset.name}", spec.path, fixed, tuple(params), cons)

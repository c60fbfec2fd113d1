"""The online-tuning recipe (seed 004, hottune's YAML): objective, phases, actuators, search, acceptance, safety.

``load_recipe(path)`` reads and checks it; every problem is one AutoMLError line naming the file, the key
and the allowed values. The decisions that use it are ``automl.search.online``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from automl.core import tune_schema as names
from automl.core.errors import AutoMLError

RISKS = ("low", "medium")            # v1 supports these; "high" is refused
MUTATION_MODES = ("mult", "abs")     # multiply the current value by a factor | set a value
ALGORITHMS = ("tpe", "random")
# none: the evaluations after a mutation against those before it (hotcb's rule: a run that is learning
# anyway makes any mutation look good); paired: against the same number of evaluations trained from the
# same snapshot without the mutation (twice the training per judged mutation, no trend in the difference);
# branches: K candidate mutations and the unmutated control train the same horizon from the same snapshot,
# side by side (one batched computation on the torch trainer), each judged against the control
CONTROLS = ("none", "paired", "branches")
MAX_BRANCHES = 64  # candidates per branch round at most (each is a copy of the run trained beside it)
# branch rounds: at every safe point the share allows, or only while the run is stuck (no metric moved beyond
# its noise over stuck_points safe points: a run that is learning is left alone)
BRANCH_WHEN = ("always", "stuck")
PPO_ACTUATORS = names.BUILTIN  # plus reward.<term>; seed 004's nested spellings: automl.core.tune_schema
# what a segment is judged on when the primary metric did not move at all (a success rate stuck at 0); a
# backup the segment's own actuator moves is skipped (the shaped return under a reward weight, the gradient
# norm under a loss weight)
BACKUP_METRICS = names.BACKUPS
DEFAULT_RECIPE = str(Path(__file__).resolve().parents[2] / "configs" / "tune" / "ppo.yaml")
_SECTION_KEYS = {"objective": ("primary", "mode", "backup_metrics"), "search": ("algorithm", "startup_trials"),
                 "acceptance": ("epsilon", "horizon", "noise_z", "rollback_on_reject", "control", "branches",
                                "max_horizon", "stuck_points", "branch_share", "branch_when", "slow_kl"),
                 "safety": ("block_on_nan", "block_on_anomaly", "max_global_reject_streak", "anomaly_factor",
                            "anomaly_min_kl")}
_TOP = ("version", "objective", "phases", "actuators", "search", "acceptance", "safety")


@dataclass(frozen=True)
class Mutation:
    """One actuator's bounded mutation: ``mult`` factors or ``abs`` values within ``bounds``."""

    name: str
    mode: str = "mult"
    bounds: tuple[float, float] = (0.5, 2.0)
    prior_center: float | None = None
    cooldown: int = 1                # decision points to wait after a rejection of this actuator
    risk: str = "low"
    phases: tuple[str, ...] = ()     # empty: every phase
    log: bool = True                 # search the factor on a log scale (mult)
    enabled: bool = True


@dataclass(frozen=True)
class Recipe:
    metric: str = "true_metric"      # the task's true metric (success rate on navigation), or its name
    mode: str = "max"
    backup_metrics: tuple[str, ...] = ()   # "name" (the primary's direction) or "name:max|min"
    phases: dict = field(default_factory=lambda: {"all": (0.0, 1.0)})
    mutations: tuple[Mutation, ...] = ()
    algorithm: str = "tpe"
    startup_trials: int = 8
    epsilon: float = 0.0
    horizon: int = 2                 # evaluations after a mutation before it is judged (next_val_epoch_end: 1)
    noise_z: float = 1.0             # the delta must also exceed z x the noise of the mean difference
    rollback_on_reject: bool = True
    control: str = "none"            # paired: judge against the same steps trained from the same state without it
    branches: int = 4                # control "branches": candidate mutations per safe point (plus the control)
    max_horizon: int = 8             # ... a stuck run's horizon doubles up to this many evaluations
    stuck_points: int = 3            # ... stuck: primary and backups within their noise over this many safe points
    branch_share: float = 0.1        # ... branch rounds cover at most this share of the run's steps (their cost:
                                     #     K+1 times the training over their horizon)
    branch_when: str = "always"      # ... "stuck": only while the run is stuck (BRANCH_WHEN) or slow:
    slow_kl: float = 0.0             # ... the median approx_kl of its last stuck_points safe points below this
                                     #     (the policy barely moves: a learning rate far too low); 0: off
    block_on_nan: bool = True
    block_on_anomaly: bool = True
    max_global_reject_streak: int = 4
    anomaly_factor: float = 10.0     # an update's approx_kl above this x the run's median ...
    anomaly_min_kl: float = 0.05     # ... and above this is an anomaly (a slow run's kl x 10 is still small)

    def backups(self, actuator: str | None = None) -> list[tuple[str, str]]:
        """(metric, max|min) for each backup metric, in the recipe's order (no direction given: the metric's
        own, max but grad/norm min); without those that mutating ``actuator`` moves by itself."""
        out = []
        for b in self.backup_metrics:
            name, _, mode = b.partition(":")
            if actuator is None or not names.moves(actuator, name):
                out.append((name, mode or names.NATURAL_MODE.get(name, "max")))
        return out

    def phase_at(self, frac: float) -> str | None:
        """The phase a fraction of training falls in (the first one whose [start, end) holds it)."""
        for name, (start, end) in self.phases.items():
            if start <= frac < end or (frac >= 1.0 and end >= 1.0 and start <= frac):
                return name
        return None


def load_recipe(path, custom: tuple[str, ...] = ()) -> Recipe:
    """The recipe at ``path`` (AutoMLError: one line naming the file, key and allowed values);
    ``custom``: the names of actuators a user registered (``automl.api.online``)."""
    from automl.core.config import load_yaml

    return recipe_from_dict(load_yaml(path, allowed="a tune recipe mapping (objective, actuators, ...)"), str(path),
                            custom)


def recipe_from_dict(d: Mapping[str, Any], where: str = "recipe", custom: tuple[str, ...] = ()) -> Recipe:
    """A recipe from its YAML mapping."""
    def bad(key: str, problem: str, allowed: str) -> AutoMLError:
        return AutoMLError(f"{where}: {key}: {problem} (allowed: {allowed})")

    unknown = [k for k in d if k not in _TOP]
    if unknown:
        raise bad(unknown[0], "unknown key", ", ".join(_TOP))
    obj = _mapping(d.get("objective") or {}, "objective", bad)
    mode = obj.get("mode", "max")
    if mode not in ("max", "min"):
        raise bad("objective.mode", repr(mode), "max, min")
    phases = {}
    for name, p in _mapping(d.get("phases") or {"all": {"start_frac": 0.0, "end_frac": 1.0}}, "phases", bad).items():
        p = _mapping(p, f"phases.{name}", bad)
        start, end = _num(p.get("start_frac", 0.0), f"phases.{name}.start_frac", bad), \
            _num(p.get("end_frac", 1.0), f"phases.{name}.end_frac", bad)
        if not 0.0 <= start < end <= 1.0:
            raise bad(f"phases.{name}", f"[{start}, {end})", "0 <= start_frac < end_frac <= 1")
        phases[str(name)] = (start, end)
    first = names.metric_name(str(obj.get("primary", "true_metric")))
    if first in names.SUPERVISED_METRICS:  # the first thing a seed-004 user is told
        raise AutoMLError(names.supervised_metric(first, f"{where}: objective.primary"))
    mutations = _mutations(_mapping(d.get("actuators") or {}, "actuators", bad), set(phases), bad, tuple(custom), where)
    search = _mapping(d.get("search") or {}, "search", bad)
    algorithm = search.get("algorithm", "tpe")
    if algorithm not in ALGORITHMS:
        raise bad("search.algorithm", repr(algorithm), ", ".join(ALGORITHMS))
    primary = _primary(obj.get("primary", "true_metric"), mutations, where)
    backups = _backups(obj.get("backup_metrics") or [], bad, where)
    acc = _mapping(d.get("acceptance") or {}, "acceptance", bad)
    safety = _mapping(d.get("safety") or {}, "safety", bad)
    _known_keys({"objective": obj, "search": search, "acceptance": acc, "safety": safety}, bad)
    return Recipe(
        metric=primary, mode=mode, backup_metrics=backups, phases=phases,
        mutations=tuple(mutations), algorithm=algorithm,
        startup_trials=_int(search.get("startup_trials", 8), "search.startup_trials", bad, 0),
        epsilon=_num(acc.get("epsilon", 0.0), "acceptance.epsilon", bad, 0.0),
        horizon=(horizon := _horizon(acc.get("horizon", 2), bad)),
        noise_z=_num(acc.get("noise_z", 1.0), "acceptance.noise_z", bad, 0.0),
        rollback_on_reject=_bool(acc.get("rollback_on_reject", True), "acceptance.rollback_on_reject", bad),
        control=_choice(acc.get("control", "none"), "acceptance.control", CONTROLS, bad),
        branches=_int(acc.get("branches", 4), "acceptance.branches", bad, 1, MAX_BRANCHES),
        max_horizon=_int(acc.get("max_horizon", max(8, horizon)), "acceptance.max_horizon", bad, horizon),
        stuck_points=_int(acc.get("stuck_points", 3), "acceptance.stuck_points", bad, 2),
        branch_share=_num(acc.get("branch_share", 0.1), "acceptance.branch_share", bad, 0.0, 1.0),
        branch_when=_choice(acc.get("branch_when", "always"), "acceptance.branch_when", BRANCH_WHEN, bad),
        slow_kl=_num(acc.get("slow_kl", 0.0), "acceptance.slow_kl", bad, 0.0),
        block_on_nan=_bool(safety.get("block_on_nan", True), "safety.block_on_nan", bad),
        block_on_anomaly=_bool(safety.get("block_on_anomaly", True), "safety.block_on_anomaly", bad),
        max_global_reject_streak=_int(safety.get("max_global_reject_streak", 4), "safety.max_global_reject_streak",
                                      bad, 1),
        anomaly_factor=_num(safety.get("anomaly_factor", 10.0), "safety.anomaly_factor", bad, 1.0),
        anomaly_min_kl=_num(safety.get("anomaly_min_kl", 0.05), "safety.anomaly_min_kl", bad, 0.0))


def _known_keys(sections: Mapping[str, Mapping], bad) -> None:
    for section, keys in _SECTION_KEYS.items():
        extra = [k for k in sections[section] if k not in keys]
        if extra:
            raise bad(f"{section}.{extra[0]}", "unknown key", ", ".join(keys))


def _mutations(acts: Mapping, phases: set, bad, custom: tuple[str, ...], where: str) -> tuple[Mutation, ...]:
    """Flat actuators and seed 004's families (``opt.mutations.*``, ``loss.keys.*``, ``reward.keys.*``), each as
    one Mutation under its flat name; a name given twice (two spellings) is refused."""
    out: dict[str, Mutation] = {}
    for name, m in acts.items():
        name = str(name)
        entries: list[tuple[str, str, Any, str | None, bool]]
        if name not in names.FAMILIES:
            entries = [(name, f"actuators.{name}", m, None, True)]
        else:
            group = _mapping(m, f"actuators.{name}", bad)
            inner = names.FAMILIES[name]
            extra = [k for k in group if k not in (inner, *names.FAMILY_KEYS)]
            if extra:
                raise bad(f"actuators.{name}.{extra[0]}", "unknown key", ", ".join((inner, *names.FAMILY_KEYS)))
            on = _bool(group.get("enabled", True), f"actuators.{name}.enabled", bad)
            entries = []
            for sub, spec in _mapping(group.get(inner) or {}, f"actuators.{name}.{inner}", bad).items():
                key = f"actuators.{name}.{inner}.{sub}"
                try:
                    flat, forced = names.resolve(name, str(sub), key)
                except ValueError as exc:
                    raise AutoMLError(f"{where}: {exc}") from None
                entries.append((flat, key, spec, forced, on))
        for flat, key, spec, forced, on in entries:
            mut = _mutation(flat, _mapping(spec, key, bad), phases, bad, custom, key=key, forced=forced)
            if flat in out:
                raise bad(key, f"{flat} is given twice", "one spelling per actuator")
            out[flat] = mut if on else dataclasses.replace(mut, enabled=False)
    return tuple(out.values())


def _primary(value: Any, mutations: tuple[Mutation, ...], where: str) -> str:
    """The primary metric: an evaluation metric (supervised names refused with our equivalents) that no enabled
    actuator moves by itself (the shaped return under reward actuators)."""
    name = names.metric_name(str(value))
    key = f"{where}: objective.primary"
    if name in names.SUPERVISED_METRICS:
        raise AutoMLError(names.supervised_metric(name, key))
    if name in names.TRAIN_METRICS:
        raise AutoMLError(f"{key}: {name!r} is a training statistic, not a result (allowed: "
                          f"{names.EQUIVALENT_METRICS}; {name} as a backup_metrics entry)")
    if name not in names.EVAL_METRICS:
        raise AutoMLError(f"{key}: {name!r} (allowed: {names.EQUIVALENT_METRICS}; also episode_reward_mean, "
                          "eval/<name>)")
    movers = [m.name for m in mutations if m.enabled and names.moves(m.name, name)]
    if movers:
        free = [n for n in names.EVAL_METRICS if not any(names.moves(a, n) for a in movers)]
        raise AutoMLError(f"{key}: {name!r} moves with the actuator {movers[0]} itself, so it cannot judge it "
                          f"(allowed: a metric no actuator moves: {', '.join(free)})")
    return name


def _backups(backups: Any, bad, where: str) -> tuple[str, ...]:
    if not isinstance(backups, list):
        raise bad("objective.backup_metrics", repr(backups), "a list of " + ", ".join(BACKUP_METRICS))
    out = []
    for b in backups:
        name, _, bmode = str(b).partition(":")
        name = names.metric_name(name)
        if name in names.SUPERVISED_METRICS:
            raise AutoMLError(names.supervised_metric(name, f"{where}: objective.backup_metrics", backup=True))
        if name not in BACKUP_METRICS or bmode not in ("", "max", "min"):
            raise bad("objective.backup_metrics", repr(b), ", ".join(BACKUP_METRICS) + " (optionally :max or :min)")
        out.append(f"{name}:{bmode}" if bmode else name)
    return tuple(out)


def _horizon(value: Any, bad) -> int:
    """Evaluations after a mutation before it is judged: a count, or a name (next_val_epoch_end: the next one)."""
    if isinstance(value, str):
        if value not in names.HORIZONS:
            raise bad("acceptance.horizon", repr(value), "an integer >= 1, or " + ", ".join(names.HORIZONS))
        return names.HORIZONS[value]
    return _int(value, "acceptance.horizon", bad, 1)


def _mutation(name: str, m: Mapping, phases: set, bad, custom: tuple[str, ...] = (), *, key: str | None = None,
              forced: str | None = None) -> Mutation:
    key = key or f"actuators.{name}"
    if name not in PPO_ACTUATORS and name not in custom and not name.startswith("reward."):
        raise bad(key, "unknown actuator", ", ".join((*PPO_ACTUATORS, *custom)) + ", reward.<term>, or seed 004's "
                  "families opt.mutations.*, loss.keys.*")
    mode = m.get("mode", forced or "mult")
    if mode not in MUTATION_MODES or (forced and mode != forced):
        raise bad(f"{key}.mode", repr(mode), forced or ", ".join(MUTATION_MODES))
    bounds = m.get("bounds", [0.5, 2.0])
    if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2):
        raise bad(f"{key}.bounds", repr(bounds), "[low, high]")
    low, high = (_num(b, f"{key}.bounds", bad) for b in bounds)
    if not low < high or (mode == "mult" and low <= 0):
        raise bad(f"{key}.bounds", f"[{low}, {high}]", "low < high, and low > 0 for mode mult")
    center = m.get("prior_center")
    if center is not None:
        center = _num(center, f"{key}.prior_center", bad)
        if not low <= center <= high:
            raise bad(f"{key}.prior_center", str(center), f"within bounds [{low}, {high}]")
    risk = m.get("risk", "low")
    if risk not in RISKS:
        raise bad(f"{key}.risk", repr(risk), ", ".join(RISKS) + " (v1 supports low and medium only)")
    ph = tuple(str(p) for p in m.get("phases") or ())
    missing = [p for p in ph if p not in phases]
    if missing:
        raise bad(f"{key}.phases", repr(missing[0]), ", ".join(sorted(phases)))
    return Mutation(name=name, mode=mode, bounds=(low, high), prior_center=center,
                    cooldown=_int(m.get("cooldown", 1), f"{key}.cooldown", bad, 0), risk=risk, phases=ph,
                    log=_bool(m.get("log", mode == "mult"), f"{key}.log", bad),
                    enabled=_bool(m.get("enabled", True), f"{key}.enabled", bad))


def _mapping(v, key: str, bad) -> Mapping:
    if not isinstance(v, Mapping):
        raise bad(key, f"{type(v).__name__}", "a mapping")
    return v


def _num(v, key: str, bad, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad(key, repr(v), "a finite number")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise bad(key, repr(v), f"a number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
    return float(v)


def _int(v, key: str, bad, minimum: int, maximum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
        raise bad(key, repr(v), f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
    return int(v)


def _choice(v, key: str, allowed: tuple, bad) -> str:
    if v not in allowed:
        raise bad(key, repr(v), ", ".join(allowed))
    return v


def _bool(v, key: str, bad) -> bool:
    if not isinstance(v, bool):
        raise bad(key, repr(v), "true, false")
    return v


SETTINGS: dict[str, tuple[str, type | tuple[str, ...]]] = {  # what `automl tune set KEY=VALUE` may change while a run goes on -> Recipe field, type
    "acceptance.epsilon": ("epsilon", float), "acceptance.horizon": ("horizon", int),
    "acceptance.noise_z": ("noise_z", float), "acceptance.rollback_on_reject": ("rollback_on_reject", bool),
    "safety.max_global_reject_streak": ("max_global_reject_streak", int),
    "safety.block_on_nan": ("block_on_nan", bool), "safety.block_on_anomaly": ("block_on_anomaly", bool),
    "safety.anomaly_factor": ("anomaly_factor", float), "safety.anomaly_min_kl": ("anomaly_min_kl", float),
    # control "branches": taken at the next round (a round in flight keeps its candidates and horizon)
    "acceptance.branches": ("branches", int), "acceptance.max_horizon": ("max_horizon", int),
    "acceptance.stuck_points": ("stuck_points", int), "acceptance.branch_share": ("branch_share", float),
    "acceptance.branch_when": ("branch_when", BRANCH_WHEN), "acceptance.slow_kl": ("slow_kl", float),
}
LIMITS = {"acceptance.stuck_points": (2, None), "acceptance.branch_share": (0.0, 1.0),
          "acceptance.branches": (1, MAX_BRANCHES)}  # others: >= 0, ints >= 1


def parse_setting(text: str) -> tuple[str, object]:
    """``acceptance.epsilon=0.002`` -> (key, typed value); AutoMLError names the allowed keys."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or key not in SETTINGS:
        raise AutoMLError(f"tune set: {text!r} (allowed: KEY=VALUE with KEY one of {', '.join(SETTINGS)})")
    spec = SETTINGS[key][1]
    raw = raw.strip()
    if isinstance(spec, tuple):  # one of these words
        if raw not in spec:
            raise AutoMLError(f"tune set: {key}: {raw!r} (allowed: {', '.join(spec)})")
        return key, raw
    kind = spec
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return key, raw.lower() == "true"
        value = kind(raw)
    except ValueError:
        value = None
    lo, hi = LIMITS.get(key, (0 if kind is float else 1, None))
    within = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
    if kind is bool and value is None:
        raise AutoMLError(f"tune set: {key}: {raw!r} (allowed: true, false)")
    if value is None or (kind is float and not math.isfinite(value)):  # not a number of its kind (nan, inf too)
        raise AutoMLError(f"tune set: {key}: {raw!r} (allowed: {'a finite number' if kind is float else 'an integer'} {within})")
    if value < lo or (hi is not None and value > hi):
        raise AutoMLError(f"tune set: {key}: {raw!r} (allowed: a number {within})")
    return key, value


def with_settings(recipe: Recipe, settings: Mapping[str, Any]) -> Recipe:
    """The recipe with ``SETTINGS`` keys changed (unknown keys are ignored: they were checked when written)."""
    changes = {SETTINGS[k][0]: v for k, v in settings.items() if k in SETTINGS}
    return dataclasses.replace(recipe, **changes) if changes else recipe


def recipe_to_dict(r: Recipe) -> dict:
    """The recipe as its YAML mapping (``automl tune export-recipe``; ``recipe_from_dict`` reads it back)."""
    acts = {}
    for m in r.mutations:
        acts[m.name] = {"enabled": m.enabled, "mode": m.mode, "bounds": list(m.bounds), "cooldown": m.cooldown,
                        "risk": m.risk, "log": m.log, **({"prior_center": m.prior_center} if m.prior_center is not None else {}),
                        **({"phases": list(m.phases)} if m.phases else {})}
    return {"version": 1,
            "objective": {"primary": r.metric, "mode": r.mode, "backup_metrics": list(r.backup_metrics)},
            "phases": {k: {"start_frac": a, "end_frac": b} for k, (a, b) in r.phases.items()},
            "actuators": acts, "search": {"algorithm": r.algorithm, "startup_trials": r.startup_trials},
            "acceptance": {"epsilon": r.epsilon, "horizon": r.horizon, "noise_z": r.noise_z,
                           "rollback_on_reject": r.rollback_on_reject, "control": r.control,
                           "branches": r.branches, "max_horizon": r.max_horizon, "stuck_points": r.stuck_points,
                           "branch_share": r.branch_share, "branch_when": r.branch_when,
                           "slow_kl": r.slow_kl},
            "safety": {"block_on_nan": r.block_on_nan, "block_on_anomaly": r.block_on_anomaly,
                       "max_global_reject_streak": r.max_global_reject_streak, "anomaly_factor": r.anomaly_factor,
                       "anomaly_min_kl": r.anomaly_min_kl}}

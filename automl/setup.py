"""Everything the staged loop needs before it starts: inputs resolved, resume checked, plan made."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from automl import space as space_mod
from automl.budget import (Budget, Throughput, heldout_reserve_s, plan_trial_steps)
from automl.config import SpaceSpec
from automl.errors import AutoMLError
from automl.runconfig import RunConfig
from automl.state import StateStore
from automl.studies import default_population

# Nominal steps/s per worker before anything was measured (dry runs and first plan only).
NOMINAL_STEPS_PER_S = {"cartpole": 40_000.0, "navigation": 25_000.0}
DEFAULT_TRIAL_STEPS = 100_000
PLANNED_EVALS = 8  # evaluations per seed job: eval_every = steps // PLANNED_EVALS
HELDOUT_OFFSET = 1000


@dataclass
class Plan:
    """Steps per seed job, phases and populations, fixed once so that configs stay comparable."""

    trial_steps: int
    eval_every: int
    cycles: int
    hp_trials: int
    population: int
    steps_per_s: float
    seed_jobs: int
    reserve_s: float

    def to_dict(self) -> dict:
        """Plain mapping for the state file and the study."""
        return asdict(self)


@dataclass
class Inputs:
    """The resolved inputs of a run: env, space, reward terms, seeds."""

    env: str
    is_task: bool
    spec: SpaceSpec
    space_path: str
    terms: dict  # term -> {default, low, high, reference}
    true_metric: str
    base_seed: int
    tuning_seeds: list[int]
    heldout_seeds: list[int]
    default_steps: int
    rollout: int
    preset_defaults: dict

    @property
    def default_weights(self) -> dict[str, float]:
        """The task's default reward weights (the baseline and the first HP phase's weights)."""
        return {k: float(t["default"]) for k, t in self.terms.items()}


def resolve_inputs(cfg: RunConfig) -> Inputs:
    """Resolve env, space (+ preset), reward terms and seeds; every bad input is one line."""
    import envs

    is_task = cfg.env in envs.TASKS
    if not is_task:
        _check_gym_id(cfg.env)
    space_path = cfg.space or str(space_mod.default_space_path(cfg.env))
    from automl.config import load_space
    spec = load_space(space_path)
    preset_defaults: dict = {}
    if cfg.preset:
        from automl.presets import apply_preset, load_preset
        preset = load_preset(cfg.preset)
        spec = apply_preset(spec, preset)
        preset_defaults = dict(preset.run_defaults or {})
    terms, true_metric = _reward_terms(cfg, is_task)
    base = cfg.seed if cfg.seed is not None else int(spec.fixed.get("seed", 0) or 0)
    prior = {**spec.fixed, **space_mod.prior_params(spec)}
    setup = space_mod.to_ppo_setup(prior, path=space_path)
    rollout = int(setup.ppo_kwargs.get("n_steps", 2048)) * int(setup.num_envs)
    default_steps = cfg.trial_steps or int(
        (setup.n_timesteps or DEFAULT_TRIAL_STEPS) * float(preset_defaults.get("trial_steps_fraction", 1.0)))
    return Inputs(env=cfg.env, is_task=is_task, spec=spec, space_path=space_path, terms=terms,
                  true_metric=true_metric, base_seed=base,
                  tuning_seeds=[base + i for i in range(cfg.seeds)],
                  heldout_seeds=[base + HELDOUT_OFFSET + i for i in range(cfg.seeds)],
                  default_steps=max(1, default_steps), rollout=rollout,
                  preset_defaults=preset_defaults)


def _check_gym_id(env_id: str) -> None:
    import envs
    import gymnasium as gym

    if env_id not in gym.registry:
        raise AutoMLError(f"--env: unknown env {env_id!r} (allowed: {', '.join(envs.TASKS)}, "
                          "or a registered gymnasium id such as CartPole-v1)")


def _reward_terms(cfg: RunConfig, is_task: bool) -> tuple[dict, str]:
    import envs

    if cfg.rewards:
        return load_reward_file(cfg.rewards)
    if is_task:
        rc = envs.reward_config(cfg.env)
        return dict(rc["terms"]), rc.get("true_metric", "reference_return")
    if cfg.mode in ("stage", "reward"):
        raise AutoMLError(f"--rewards: env {cfg.env!r} has no reward-terms file; give --rewards "
                          "FILE (terms reported in info) or use --mode hp")
    return {}, "reference_return"


def load_reward_file(path: str) -> tuple[dict, str]:
    """A reward-terms YAML: {true_metric, terms: {name: {default, low, high[, reference]}}}."""
    from automl.config import load_yaml

    data = load_yaml(path, allowed="a reward-terms mapping {true_metric: ..., terms: {name: {default, low, high}}}")
    terms = data.get("terms")
    if not isinstance(terms, dict) or not terms:
        raise AutoMLError(f"{path}: terms: missing or empty (allowed: a mapping of term name to "
                          "{default, low, high})")
    out = {}
    for name, t in terms.items():
        try:
            lo, hi, d = float(t["low"]), float(t["high"]), float(t["default"])
        except (TypeError, KeyError, ValueError):
            raise AutoMLError(f"{path}: terms.{name}: needs numeric default, low, high") from None
        if not lo <= d <= hi:
            raise AutoMLError(f"{path}: terms.{name}.default: {d} outside [{lo}, {hi}]")
        out[name] = {"default": d, "low": lo, "high": hi, "reference": float(t.get("reference", d))}
    return out, str(data.get("true_metric", "reference_return"))


def fingerprint(cfg: RunConfig, inputs: Inputs) -> dict:
    """What must match to resume: the command's identity and the space's content."""
    text = Path(inputs.space_path).read_bytes() if Path(inputs.space_path).exists() else b""
    return {**cfg.fingerprint(), "search_space_id": inputs.spec.search_space_id,
            "space_sha": hashlib.sha256(text).hexdigest()[:16]}


def check_resume(store: StateStore, cfg: RunConfig, fp: dict) -> dict | None:
    """The earlier state when resuming, None when starting; a different run is refused."""
    if cfg.fresh:
        if not cfg.dry_run:
            moved = store.archive()
            if moved:
                print(f"automl: --fresh: the earlier run was moved to {moved}")
        return None
    if not store.exists():
        return None
    old = store.load()
    before = old.get("fingerprint") or {}
    diff = sorted(k for k in fp if before.get(k) != fp[k])
    if diff:
        k = diff[0]
        raise AutoMLError(f"{store.path}: recorded by a different command ({k}: {before.get(k)!r} "
                          f"there, {fp[k]!r} now); re-run with --fresh to start over, or use "
                          "another --run-dir")
    return old


def make_plan(cfg: RunConfig, inputs: Inputs, budget: Budget, steps_per_s: float) -> Plan:
    """Steps per trial from the budget, the requested trials and measured throughput."""
    cycles = cfg.reward_generations if cfg.mode == "stage" else (
        1 if cfg.mode == "hp" else cfg.reward_generations)
    hp_trials = cfg.hp_trials  # a preset's hp_trials was merged in by the CLI
    if cfg.mode == "stage" and cycles == 0:
        cycles = 1
    n_weights = sum(1 for t in inputs.terms.values() if t["low"] < t["high"])
    population = cfg.reward_population or default_population(n_weights)
    hp_configs = 0 if cfg.mode == "reward" else hp_trials * cycles
    if cfg.max_trials:
        hp_configs = min(hp_configs, cfg.max_trials)
    rw_configs = 0 if cfg.mode == "hp" else population * cycles
    seed_jobs = (hp_configs + rw_configs) * cfg.seeds
    tp = Throughput(steps_per_s=steps_per_s)
    heldout_jobs = (cfg.top_k + 1) * cfg.seeds
    total_s = budget.remaining_s()
    # Tuning and held-out jobs share the budget in proportion to their count.
    share = seed_jobs / max(1, seed_jobs + heldout_jobs)
    steps = plan_trial_steps(default_steps=inputs.default_steps, budget_s=total_s * share,
                             seed_jobs=max(1, seed_jobs), n_jobs=cfg.n_jobs, throughput=tp,
                             rollout=inputs.rollout if inputs.default_steps >= inputs.rollout else 1)
    if rw_configs and not cfg.reward_population and steps < inputs.default_steps:
        # When trials had to shrink, shrink the reward population too (not below 4).
        population = max(4, min(population, int(population * steps / inputs.default_steps) + 1))
    reserve = heldout_reserve_s(configs=cfg.top_k + 1, seeds=cfg.seeds, steps=steps,
                                n_jobs=cfg.n_jobs, throughput=tp)
    eval_every = cfg.eval_every or max(inputs.rollout, (steps // PLANNED_EVALS // max(1, inputs.rollout))
                                       * max(1, inputs.rollout))
    return Plan(trial_steps=steps, eval_every=min(eval_every, steps), cycles=cycles,
                hp_trials=hp_trials, population=population, steps_per_s=steps_per_s,
                seed_jobs=seed_jobs, reserve_s=reserve)


def stage_list(plan: Plan, mode: str, max_trials: int | None, has_terms: bool) -> list:
    """(kind, cycle, quota) in order: per cycle an HP phase, then a reward phase, as the mode says."""
    out, hp_left = [], max_trials or 10**9
    for cycle in range(1, plan.cycles + 1):
        if mode in ("stage", "hp"):
            quota = min(plan.hp_trials, hp_left)
            hp_left -= quota
            if quota > 0:
                out.append(("hp", cycle, quota))
        if mode in ("stage", "reward") and has_terms:
            out.append(("reward", cycle, plan.population))
    return out


def load_state_yaml(path: Path) -> dict:
    """Read a YAML file written by state.py (used by status/export)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise AutoMLError(f"{path}: not found (run `automl --mode stage ...` first)") from None
    except yaml.YAMLError as exc:
        raise AutoMLError(f"{path}: corrupt YAML ({str(exc).splitlines()[0]})") from None

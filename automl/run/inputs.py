"""A run's inputs, resolved before anything trains: env, search space, reward terms, seeds; the run's
fingerprint and the check that a resumed run is the same command."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.core.config import SpaceSpec, to_ppo_setup
from automl.core.errors import AutoMLError
from automl.run.defaults import FINGERPRINT_DEFAULTS, HELDOUT_OFFSET, TEST_OFFSET, default_trainer
from automl.run.state import StateStore
from automl.search import space as space_mod

if TYPE_CHECKING:  # annotations only
    from automl.run.runconfig import RunConfig

DEFAULT_TRIAL_STEPS = 100_000  # a space without n_timesteps


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
    test_seeds: list[int]
    default_steps: int
    rollout: int
    preset_defaults: dict
    episode_steps: int = 1000  # the env's time limit (what one evaluation episode may cost)

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
        if cfg.trainer == "torch":
            raise AutoMLError(f"--trainer: torch trains the batched tasks only (allowed for {cfg.env!r}: "
                              f"sb3; torch with --env {' | '.join(envs.TASKS)})")
    space_path = cfg.space or str(space_mod.default_space_path(cfg.env))
    from automl.core.config import load_space
    spec = load_space(space_path)
    preset_defaults: dict = {}
    if cfg.preset:
        from automl.search.presets import apply_preset, load_preset
        preset = load_preset(cfg.preset)
        spec = apply_preset(spec, preset)
        preset_defaults = dict(preset.run_defaults or {})
    terms, true_metric = _reward_terms(cfg, is_task)
    base = cfg.seed if cfg.seed is not None else int(spec.fixed.get("seed", 0) or 0)
    prior = {**spec.fixed, **space_mod.prior_params(spec)}
    setup = to_ppo_setup(prior, path=space_path)
    rollout = int(setup.ppo_kwargs.get("n_steps", 2048)) * int(setup.num_envs)
    default_steps = cfg.trial_steps or int(
        (setup.n_timesteps or DEFAULT_TRIAL_STEPS) * float(preset_defaults.get("trial_steps_fraction", 1.0)))
    return Inputs(env=cfg.env, is_task=is_task, spec=spec, space_path=space_path, terms=terms,
                  true_metric=true_metric, base_seed=base,
                  tuning_seeds=[base + i for i in range(cfg.seeds)],
                  heldout_seeds=[base + HELDOUT_OFFSET + i for i in range(cfg.seeds)],
                  test_seeds=[base + TEST_OFFSET + i for i in range(cfg.seeds)],
                  default_steps=max(1, default_steps), rollout=rollout,
                  preset_defaults=preset_defaults, episode_steps=_episode_steps(cfg.env, is_task))


def _episode_steps(env_id: str, is_task: bool) -> int:
    """The env's episode time limit (1000 when it has none)."""
    import envs
    import gymnasium as gym

    if is_task:
        return envs.max_episode_steps(env_id) or 1000
    return int(gym.spec(env_id).max_episode_steps or 1000)


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
    if cfg.run_mode.needs_reward_terms:
        raise AutoMLError(f"--rewards: env {cfg.env!r} has no reward-terms file; give --rewards "
                          "FILE (terms reported in info) or use --mode hp")
    return {}, "reference_return"


def load_reward_file(path: str) -> tuple[dict, str]:
    """A reward-terms YAML: {true_metric, terms: {name: {default, low, high[, reference]}}}."""
    from automl.core.config import load_yaml

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


def resolve_defaults(cfg: RunConfig, store: StateStore) -> RunConfig:
    """The defaults that depend on the env or on the run being resumed.

    ``--trainer auto``: the trainer the resumed run used; for a new run, torch on the batched tasks
    and sb3 for gymnasium ids. No ``--objective``: the resumed run's (mean for runs recorded before
    the flag existed); iqm for a new run. Explicit values are kept (check_resume compares them).
    """
    before: dict = {}
    if not cfg.fresh and store.exists():
        try:
            before = store.load().get("fingerprint") or {}
        except AutoMLError:
            before = {}  # check_resume reports the corrupt file
    changes: dict[str, Any] = {}
    if cfg.trainer == "auto":
        changes["trainer"] = (before.get("trainer", FINGERPRINT_DEFAULTS["trainer"]) if before
                              else default_trainer(cfg.env))
    if cfg.objective is None:
        changes["objective"] = before.get("objective", FINGERPRINT_DEFAULTS["objective"]) if before else "iqm"
    return dataclasses.replace(cfg, **changes) if changes else cfg


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
    # keys added after a run was recorded count as their default (older runs still resume)
    diff = sorted(k for k in fp if before.get(k, FINGERPRINT_DEFAULTS.get(k)) != fp[k])
    if diff:
        k = diff[0]
        raise AutoMLError(f"{store.path}: recorded by a different command ({k}: {before.get(k)!r} "
                          f"there, {fp[k]!r} now); re-run with --fresh to start over, or use "
                          "another --run-dir")
    return old

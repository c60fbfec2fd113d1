"""Everything the staged loop needs before it starts: inputs resolved, resume checked, plan made."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path


from automl.search import space as space_mod
from automl.run.budget import (MAX_EVAL_SHARE, MAX_RESERVE_FRACTION, MIN_STEP_FRACTION, MIN_TRIAL_STEPS, Budget,
                           Throughput, heldout_reserve_s, plan_evaluation, plan_trial_steps, whole_rollouts)
from automl.core.config import SpaceSpec, to_ppo_setup
from automl.core.errors import AutoMLError
from automl.run.runconfig import FINGERPRINT_DEFAULTS, HELDOUT_OFFSET, TEST_OFFSET, RunConfig, default_trainer
from automl.run.state import StateStore
from automl.search.reward import default_population

# Nominal steps/s per worker before anything was measured (dry runs and first plan only).
NOMINAL_STEPS_PER_S = {"cartpole": 40_000.0, "navigation": 25_000.0}
DEFAULT_TRIAL_STEPS = 100_000
PLANNED_EVALS = 8  # evaluations per seed job at most: eval_every = steps // evals
DEFAULT_EVAL_EPISODES = 32  # episodes per evaluation at most (fewer when evaluation is dear)
TEST_CONFIGS = 2    # the held-out winner and the baseline re-trained on the test seeds
NOMINAL_EVAL_S_PER_EPISODE_STEP = 2e-4  # before anything was measured: ~0.2 ms per eval step


@dataclass(frozen=True)
class Calibration:
    """What short real jobs of the prior config measured, per worker with all workers busy."""

    train_steps_per_s: float  # training only (collection + updates)
    eval_s_each: float        # one evaluation of `episodes` episodes
    episodes: int
    startup_s: float = 2.0
    measured: bool = True
    floor: float | None = None  # the lowest true metric the short runs of the prior reached
    learn_steps: int | None = None  # where the prior's learning curve measurably left its start (the ladder's floor)
    curve: tuple = ()           # the prior's learning curve: (steps, mean true metric, standard error)


@dataclass
class Plan:
    """Steps per seed job, phases and populations, fixed once so that configs stay comparable."""

    trial_steps: int
    eval_every: int
    cycles: int
    hp_trials: int
    population: int
    steps_per_s: float          # effective: training plus the planned evaluations
    seed_jobs: int
    reserve_s: float
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    evals_per_job: int = PLANNED_EVALS
    eval_share: float = 0.0     # estimated share of a job spent evaluating
    train_steps_per_s: float = 0.0
    startup_s: float = 2.0
    heldout_configs: int = 0    # configs the reserve is sized for (top-k + baseline, fewer if few fit)
    shrunk: bool = False        # the budget made trials shorter than the space's default length
    value_floor: float | None = None  # calibration's lowest true metric: a failed seed's value before any result
    ladder: dict | None = None  # the fidelity ladder (automl.run.ladder.LadderPlan.to_dict()); None: --ladder off

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """A recorded plan (older state files lack the newer fields: they keep their defaults)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

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
    before = {}
    if not cfg.fresh and store.exists():
        try:
            before = store.load().get("fingerprint") or {}
        except AutoMLError:
            before = {}  # check_resume reports the corrupt file
    changes = {}
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


def nominal_calibration(cfg: RunConfig, inputs: Inputs) -> Calibration:
    """A guess before anything was measured (dry runs and the first plan only)."""
    episodes = cfg.eval_episodes or DEFAULT_EVAL_EPISODES
    rate = NOMINAL_STEPS_PER_S.get(cfg.env, 10_000.0)
    return Calibration(train_steps_per_s=rate, episodes=episodes, measured=False,
                       eval_s_each=inputs.episode_steps * NOMINAL_EVAL_S_PER_EPISODE_STEP *
                       (1 if inputs.is_task else episodes))


def make_plan(cfg: RunConfig, inputs: Inputs, budget: Budget, cal: Calibration) -> Plan:
    """Steps per trial and the evaluation schedule from the budget, the requested trials and
    measured throughput: evaluation is held to MAX_EVAL_SHARE of a job (fewer evaluations,
    then fewer episodes), trials shrink (never grow) to fit, and the held-out reserve is
    sized for the configs that will be there to re-check. With the fidelity ladder (``--ladder on``) the
    plan is the ladder's (automl.run.ladder_plan.make_run_plan chooses)."""
    cycles, hp_trials, population, seed_jobs = _quotas(cfg, inputs)
    full_population = population
    total_s = budget.remaining_s()
    episodes = cfg.eval_episodes or cal.episodes
    steps, ev, eff = inputs.default_steps, None, cal.train_steps_per_s * (1 - MAX_EVAL_SHARE)
    heldout_configs = cfg.top_k + 1
    for _ in range(6):  # steps, evaluation cost, reserve and population depend on each other
        before = (population, heldout_configs)
        heldout_jobs = (heldout_configs + TEST_CONFIGS) * cfg.seeds
        share = seed_jobs / max(1, seed_jobs + heldout_jobs)
        tp = Throughput(steps_per_s=eff, startup_s=cal.startup_s)
        steps = plan_trial_steps(default_steps=inputs.default_steps, budget_s=total_s * share,
                                 seed_jobs=max(1, seed_jobs), n_jobs=cfg.n_jobs, throughput=tp,
                                 rollout=_rollout(inputs))
        ev = _eval_plan(cfg, inputs, cal, steps, episodes)
        eff = steps / (steps / max(cal.train_steps_per_s, 1e-9) + ev.eval_s)
        tp = Throughput(steps_per_s=eff, startup_s=cal.startup_s)
        heldout_configs = _heldout_configs(cfg, total_s, steps, tp)
        if full_population and not cfg.reward_population:
            # When trials had to shrink, shrink the reward population too (not below 4).
            population = max(4, min(full_population, int(full_population * steps / inputs.default_steps) + 1))
            cycles, hp_trials, population, seed_jobs = _quotas(cfg, inputs, population)
        if (population, heldout_configs) == before:
            break
    reserve = heldout_reserve_s(configs=heldout_configs + TEST_CONFIGS, seeds=cfg.seeds, steps=steps,
                                n_jobs=cfg.n_jobs, throughput=tp)
    eval_every = cfg.eval_every or _eval_every(steps, ev.evals, inputs.rollout)
    full = whole_rollouts(inputs.default_steps, _rollout(inputs))
    return Plan(shrunk=steps < full, trial_steps=steps, eval_every=min(eval_every, steps), cycles=cycles,
                hp_trials=hp_trials, population=population, steps_per_s=eff,
                seed_jobs=seed_jobs, reserve_s=reserve, eval_episodes=ev.episodes,
                evals_per_job=ev.evals, eval_share=round(ev.share, 4),
                train_steps_per_s=cal.train_steps_per_s, startup_s=cal.startup_s,
                heldout_configs=heldout_configs, value_floor=cal.floor)


def _rollout(inputs: Inputs) -> int:
    """Trials are whole rollouts, unless the default length is shorter than one."""
    return max(1, inputs.rollout) if inputs.default_steps >= inputs.rollout else 1


def _quotas(cfg: RunConfig, inputs: Inputs, population: int | None = None) -> tuple[int, int, int, int]:
    """(cycles, HP trials per phase, reward population, tuning seed jobs) as the mode says
    (``automl.run.modes``: its cycles and its tuning configs)."""
    n_weights = sum(1 for t in inputs.terms.values() if t["low"] < t["high"])
    if population is None:
        population = cfg.reward_population or default_population(n_weights)
    mode = cfg.run_mode
    configs = mode.tuning_configs(cfg, bool(inputs.terms), population)
    return mode.cycles(cfg), cfg.hp_trials, population, configs * cfg.seeds


def _eval_plan(cfg: RunConfig, inputs: Inputs, cal: Calibration, steps: int, episodes: int):
    """The evaluation schedule for `steps`; a user's --eval-every/--eval-episodes are kept as given."""
    each = cal.eval_s_each * episodes / max(1, cal.episodes)
    given = bool(cfg.eval_every or cfg.eval_episodes)
    max_evals = max(1, -(-steps // cfg.eval_every)) if cfg.eval_every else PLANNED_EVALS
    return plan_evaluation(steps=steps, train_steps_per_s=cal.train_steps_per_s, eval_s_each=each,
                           episodes=episodes, max_evals=max_evals,
                           max_share=1.0 if given else MAX_EVAL_SHARE)


def _eval_every(steps: int, evals: int, rollout: int) -> int:
    """Steps between evaluations for `evals` evaluations per job, in whole rollouts."""
    r = max(1, rollout)
    return max(r, (steps // max(1, evals) // r) * r)


def _heldout_configs(cfg: RunConfig, total_s: float, steps: int, tp: Throughput) -> int:
    """Top-k + baseline, or fewer tuned configs when fewer than top-k can be trained at all."""
    job_s = tp.seconds_for(steps)
    config_s = -(-cfg.seeds // cfg.n_jobs) * job_s
    fit = int(total_s * (1 - MAX_RESERVE_FRACTION) // max(config_s, 1e-9))
    return max(1, min(cfg.top_k, fit)) + 1


def minimum_budget_s(cfg: RunConfig, inputs: Inputs, cal: Calibration) -> tuple[float, int]:
    """(seconds, steps): one tuning config at the minimum trial length plus the held-out
    re-check of it and the baseline, at the measured throughput."""
    floor = min(inputs.default_steps, max(MIN_TRIAL_STEPS, int(inputs.default_steps * MIN_STEP_FRACTION)))
    r = _rollout(inputs)
    floor = max(r, -(-floor // r) * r)
    ev = _eval_plan(cfg, inputs, cal, floor, cfg.eval_episodes or cal.episodes)
    tp = Throughput(steps_per_s=floor / (floor / max(cal.train_steps_per_s, 1e-9) + ev.eval_s),
                    startup_s=cal.startup_s)
    waves = -(-cfg.seeds // cfg.n_jobs)
    return 3 * waves * tp.seconds_for(floor), floor


def plan_text(ctx, stages: list) -> str:
    """The --dry-run summary of a staged run: its tuning ``stages`` (automl.run.modes.Stage), configs, steps
    per trial, estimated time."""
    p, cfg = ctx.plan, ctx.cfg
    stages = [f"{k}#{c} ({q} configs)" for k, c, q in stages]
    est_s = p.seed_jobs * (p.startup_s + p.trial_steps / p.steps_per_s) / cfg.n_jobs + p.reserve_s
    if p.ladder:  # the ladder admits configs while they fit: it plans to use the budget
        est_s = p.ladder["tuning_s"] + p.ladder["reserve_s"]
    return "\n".join([
        f"env: {cfg.env}   space: {ctx.inputs.space_path} ({ctx.inputs.spec.search_space_id})",
        f"mode: {cfg.mode}   search: {cfg.search_method}   pruner: {cfg.pruner_name}   n_jobs: {cfg.n_jobs}",
        f"stages: {' -> '.join(stages) or 'none'} -> heldout (top {cfg.top_k} + baseline) -> test (winner + baseline)",
        f"seeds: tuning {ctx.inputs.tuning_seeds}, held-out {ctx.inputs.heldout_seeds}, test {ctx.inputs.test_seeds}",
        f"steps per seed job: {p.trial_steps} (default {ctx.inputs.default_steps}), eval every {p.eval_every} "
        f"({p.evals_per_job} evaluations x {p.eval_episodes} episodes, ~{p.eval_share:.0%} of a job)",
        f"seed jobs: {p.seed_jobs} tuning + {(cfg.top_k + 1) * cfg.seeds} held-out + {TEST_CONFIGS * cfg.seeds} test",
        f"estimated time: {est_s / 60:.1f} min at ~{p.steps_per_s:,.0f} steps/s per worker (nominal) "
        f"of a {cfg.budget_hours * 60:.1f} min budget",
        f"run dir: {ctx.store.run_dir}",
    ] + _ladder_lines(ctx))


def _ladder_lines(ctx) -> list[str]:
    """The ladder's --dry-run lines (automl.run.ladder_plan.ladder_text, passed in by the context)."""
    return ctx.ladder_text() if ctx.plan.ladder else []

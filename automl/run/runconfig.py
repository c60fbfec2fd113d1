"""RunConfig: every knob of one `automl run`, validated once at the boundary (no torch/optuna)."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field

from automl.core.errors import AutoMLError
from automl.core.names import DEFAULT_RISK, OBJECTIVES, PRUNERS, SEARCH_METHODS, default_pruner_for
from automl.exec.devices import check_devices

from automl.run.defaults import (EXECUTORS, HELDOUT_OFFSET, LADDER, PRUNED_METRICS, SEED_AXIS_TRAINERS,
                                  SEED_BATCHING, TEST_OFFSET, TRAINERS)


@dataclass(frozen=True)
class RunConfig:
    """One staged search: what to tune, on which env, within which budget, written where."""

    mode: str = "stage"           # a name of automl.run.modes.MODES (the object: run_mode)
    budget_hours: float = 1.0
    hp_trials: int = 8
    max_trials: int | None = None
    reward_generations: int = 3
    reward_population: int | None = None
    seeds: int = 3
    search_method: str = "tpe"
    startup_trials: int | None = None  # --startup-trials: TPE's (and CMA-ES's) random trials first (None: Optuna's 10)
    pruner: str | None = None
    n_jobs: int = field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)))
    env: str = "navigation"
    space: str | None = None
    preset: str | None = None
    rewards: str | None = None
    trial_steps: int | None = None
    run_dir: str = "progress"
    storage: str | None = None
    device: str = "auto"
    seed: int | None = None
    fresh: bool = False
    dry_run: bool = False
    top_k: int = 3
    eval_every: int | None = None
    eval_episodes: int | None = None   # None: up to 32, fewer when evaluation would be dear
    timeout_per_trial: float | None = None
    checkpoint_every: int | None = None  # None: about every 2 minutes of training
    keep_checkpoints: bool = False
    quiet: bool = False
    trainer: str = "auto"         # resolved before the run starts (automl.run.inputs.resolve_defaults)
    seed_batching: str = "auto"   # auto: on with the torch trainer on CUDA
    objective: str | None = None  # None: iqm for a new run, the recorded one on resume (automl.run.inputs.resolve_defaults)
    risk: float = DEFAULT_RISK    # K in --objective mean-std (mean - K * std over seeds)
    population: int = 8           # --mode pbt: members trained together
    ready_steps: int | None = None  # --mode pbt: env steps per member between ready points (None: a tenth of training)
    quantile: float = 0.25        # --mode pbt: the bottom (and top) fraction at each ready point
    perturb: tuple = (0.8, 1.2)   # --mode pbt: factors a copied value is multiplied by
    resample_p: float = 0.25      # --mode pbt: probability a copied value is resampled from the space instead
    metrics: str | None = None    # --metrics success_rate:max,train_time_s:min (several objectives)
    constraints: tuple = ()       # --constraint "success_rate >= 0.8" (repeatable)
    pick: str = "knee"            # --pick knee|<metric>: the winner among the Pareto front
    executor: str = "local"       # local worker processes | ray (tasks on a Ray cluster)
    ray_address: str | None = None  # --executor ray: auto | HOST:PORT (None: a local Ray started for the run)
    ladder: str = "auto"          # --ladder: the fidelity ladder (automl.run.ladder_phase); auto: the mode's default
    gpus_per_job: float | None = None  # --executor ray: Ray's num_gpus per seed job (automl.exec.ray_backend)
    devices: tuple = ()           # --devices cuda:0,cuda:1: local workers spread over them (automl.exec.workers)
    mode_options: dict = field(default_factory=dict, hash=False)  # the mode's own flags (automl.run.modes.Flag) by dest
    command: str = ""

    def __post_init__(self):
        # an unknown --mode is refused first; the mode's own flags get their defaults
        object.__setattr__(self, "mode_options", self.run_mode.options(dict(self.mode_options or {})))
        _check_choice("--search-method", self.search_method, SEARCH_METHODS)
        _check_choice("--trainer", self.trainer, TRAINERS)
        _check_choice("--seed-batching", self.seed_batching, SEED_BATCHING)
        _check_choice("--executor", self.executor, EXECUTORS)
        _check_choice("--ladder", self.ladder, LADDER)
        if self.ladder == "on" and not self.run_mode.climbs_ladder:
            raise AutoMLError(f"--ladder: on does not apply to --mode {self.mode} (allowed: auto, off)")
        if self.ray_address is not None and self.executor != "ray":
            raise AutoMLError("--ray-address: needs --executor ray")
        if self.executor == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise AutoMLError('--executor: ray is not installed (allowed: local, or pip install -e ".[ray]")')
        if self.objective is not None:
            _check_choice("--objective", self.objective, OBJECTIVES)
        if self.seed_batching == "on" and self.trainer not in (*SEED_AXIS_TRAINERS, "auto"):
            raise AutoMLError(f"--seed-batching: on needs a trainer that batches seeds (allowed: "
                              f"--trainer {' | '.join(SEED_AXIS_TRAINERS)}; got --trainer {self.trainer})")
        if self.pruner is not None:
            _check_choice("--pruner", self.pruner, PRUNERS)
        if self.ladder_on and self.pruner not in (None, "none"):
            raise AutoMLError(f"--pruner: {self.pruner} with the fidelity ladder (the ladder is the multi-fidelity "
                              "search: it continues the best configs instead of pruning inside a trial; allowed: "
                              "--pruner none, or --ladder off)")
        if isinstance(self.risk, bool) or not isinstance(self.risk, (int, float)) or not 0 <= self.risk < math.inf:
            raise AutoMLError(f"--risk: must be a number >= 0 (got {self.risk!r})")
        _check_positive("--budget-hours", self.budget_hours, allow_float=True)
        for flag, value in (("--seeds", self.seeds), ("--n-jobs", self.n_jobs),
                            ("--top-k", self.top_k)):
            _check_positive(flag, value)
        for flag, value in (("--hp-trials", self.hp_trials),
                            ("--reward-generations", self.reward_generations)):
            if not isinstance(value, int) or value < 0:
                raise AutoMLError(f"{flag}: must be a whole number >= 0 (got {value!r})")
        for flag, value in (("--max-trials", self.max_trials),
                            ("--reward-population", self.reward_population),
                            ("--trial-steps", self.trial_steps),
                            ("--eval-every", self.eval_every),
                            ("--eval-episodes", self.eval_episodes),
                            ("--checkpoint-every", self.checkpoint_every),
                            ("--startup-trials", self.startup_trials)):
            if value is not None:
                _check_positive(flag, value)
        if self.timeout_per_trial is not None:
            _check_positive("--timeout-per-trial", self.timeout_per_trial, allow_float=True)
        if self.seeds > HELDOUT_OFFSET:
            raise AutoMLError(f"--seeds: {self.seeds} (allowed: 1..{HELDOUT_OFFSET}: the held-out seeds start at "
                              f"--seed+{HELDOUT_OFFSET} and the test seeds at --seed+{TEST_OFFSET}, and the three sets "
                              "must not overlap)")
        self._check_pbt()
        self._check_selection()
        object.__setattr__(self, "devices", check_devices(self))  # automl.exec.workers
        self.run_mode.check(self)

    def _check_pbt(self) -> None:
        if isinstance(self.perturb, str):
            try:
                object.__setattr__(self, "perturb", tuple(float(x) for x in self.perturb.split(",") if x.strip()))
            except ValueError:
                raise AutoMLError(f"--perturb: {self.perturb!r} is not a comma-separated list of numbers "
                                  "(allowed: factors > 0, e.g. 0.8,1.2)") from None
        object.__setattr__(self, "perturb", tuple(float(x) for x in self.perturb))
        _check_positive("--population", self.population)
        if self.ready_steps is not None:
            _check_positive("--ready-steps", self.ready_steps)
        from automl.search.pbt import PBTRules  # the rules' own bounds, as flags

        try:
            PBTRules(quantile=self.quantile, perturb=self.perturb, resample_p=self.resample_p)
        except (ValueError, TypeError) as err:
            name, _, rest = str(err).partition(":")
            raise AutoMLError(f"--{name.replace('_', '-')}:{rest}") from None

    def _check_selection(self) -> None:
        from automl.core.names import MULTI_OBJECTIVE_METHODS
        from automl.core.objectives import selection

        object.__setattr__(self, "constraints", tuple(self.constraints or ()))
        sel = selection(self.metrics, self.constraints, self.pick)
        if sel is None:
            return
        if not self.run_mode.allows_selection:
            from automl.run.modes import MODES

            allowed = ", ".join(name for name, m in MODES.items() if m.allows_selection)
            raise AutoMLError(f"--metrics/--constraint: not with --mode {self.mode} (allowed: {allowed})")
        if sel.objectives and self.search_method not in MULTI_OBJECTIVE_METHODS:
            raise AutoMLError(f"--search-method: {self.search_method} optimises one objective "
                              f"(allowed with --metrics: {', '.join(MULTI_OBJECTIVE_METHODS)})")
        if sel.objectives and sel.objectives[0].name not in PRUNED_METRICS and self.pruner not in (None, "none"):
            raise AutoMLError(f"--pruner: {self.pruner} prunes on the first of --metrics, which must then be the "
                              f"task's metric (allowed: --metrics starting with {' or '.join(PRUNED_METRICS)}, "
                              f"or --pruner none)")

    @functools.cached_property
    def run_mode(self):
        """The ``--mode`` object (automl.run.modes): its checks, plan, search owners and phases."""
        from automl.run.modes import mode_named

        return mode_named(self.mode)

    @functools.cached_property
    def selection(self):
        """The run's objectives, constraints and pick rule (automl.core.objectives.Selection), or None
        (parsed once: the ranking asks for it at every finished config)."""
        from automl.core.objectives import selection

        return selection(self.metrics, self.constraints, self.pick)

    def pbt_settings(self) -> dict:
        """The population's settings (--mode pbt): part of the fingerprint, and the state file's
        ``pbt.settings``."""
        return {"population": self.population, "ready_steps": self.ready_steps, "quantile": float(self.quantile),
                "perturb": [float(f) for f in self.perturb], "resample_p": float(self.resample_p)}

    @property
    def objective_name(self) -> str:
        """--objective once resolved (``automl.run.inputs.resolve_defaults`` sets it before a run opens)."""
        if self.objective is None:
            raise ValueError("--objective is resolved before a run opens (automl.run.inputs.resolve_defaults)")
        return self.objective

    @property
    def ladder_on(self) -> bool:
        """Whether tuning climbs the fidelity ladder (--ladder on, or auto in a mode that declares it)."""
        return self.ladder != "off" and self.run_mode.climbs_ladder

    @property
    def pruner_name(self) -> str:
        """The pruner in force: --pruner, else the mode's (hyperband for --mode joint), else the search
        method's (hyperband for the hyperband method), else none."""
        if self.ladder_on or (self.selection is not None and self.selection.objectives
                              and self.selection.objectives[0].name not in PRUNED_METRICS):
            return "none"  # the ladder continues configs instead; or nothing to prune the first objective on  # intermediate values are the task's metric: nothing to prune the first objective on
        if self.pruner is None and self.run_mode.default_pruner:
            return self.run_mode.default_pruner
        return default_pruner_for(self.search_method, self.pruner)

    def batches_seeds(self, cuda: bool) -> bool:
        """Whether each config's seeds train as one batched job (`cuda`: the device is a GPU)."""
        if self.trainer not in SEED_AXIS_TRAINERS or self.seed_batching == "off":
            return False
        return self.seed_batching == "on" or cuda

    def fingerprint(self) -> dict:
        """What must match for a re-run to resume this run (budget and trial counts may change)."""
        # "pbt": every fingerprint has held the key since --mode pbt came (a study's recorded one is compared whole)
        fp = {"env": self.env, "mode": self.mode, "space": self.space, "preset": self.preset,
              "rewards": self.rewards, "search_method": self.search_method,
              "seeds": self.seeds, "seed": self.seed, "trainer": self.trainer, "objective": self.objective,
              "risk": float(self.risk), "pbt": None, "metrics": self.metrics,
              "constraints": list(self.constraints), "ladder": self.ladder_on}
        fp.update(self.run_mode.fingerprint_settings(self))
        return fp

    def executor_options(self) -> dict:
        """What the executor is built with besides n_jobs: Ray's address and GPUs per job, the local devices."""
        if self.executor == "ray":
            return {"address": self.ray_address, "gpus_per_job": self.gpus_per_job}
        return {"devices": self.devices} if self.devices else {}

    def to_dict(self) -> dict:
        """Plain mapping for the state file."""
        return asdict(self)


def _check_choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise AutoMLError(f"{flag}: unknown value {value!r} (allowed: {', '.join(allowed)})")


def _check_positive(flag: str, value, *, allow_float: bool = False) -> None:
    ok_type = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise AutoMLError(f"{flag}: must be a number > 0 (got {value!r})")
    if not (value > 0) or (isinstance(value, float) and not math.isfinite(value)):
        raise AutoMLError(f"{flag}: must be > 0 (got {value!r})")

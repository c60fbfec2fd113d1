"""Synthetic run directories (study.db + automl_state.yaml) with known answers, no training.

Builds what the driver writes, following interfaces.md ("Optuna study layout") and the
state-file example in DESIGN.md, so analysis/status tests can run in a fraction of a second.

    trials = make_trials(n_configs=40, n_seeds=3, noise=0.0)   # value driven by DRIVERS only
    run_dir = write_run(tmp_path / "run", trials)

Other test modules may reuse it; the public names are SPACE, DRIVERS, SynthTrial,
sample_params, known_answer_value, make_trials and write_run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

# Five search coordinates as the study stores them (list choices encoded as "256-128-64").
SPACE = {
    "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    "entropy_loss_scale": FloatDistribution(1e-4, 1e-1, log=True),
    "learning_epochs": IntDistribution(2, 10),
    "policy_hidden_layer_sizes": CategoricalDistribution(("128-64", "256-128-64", "512-256-128")),
    "reward.collision": FloatDistribution(-5.0, 0.0),
}
# The two parameters that drive known_answer_value; the other three are inert.
DRIVERS = ("learning_rate", "reward.collision")
REWARD_DEFAULTS = {"collision": -1.0}

_STATE_TO_OPTUNA = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
    "rejected": TrialState.FAIL,
    "stopped_at_deadline": TrialState.FAIL,
    "running": TrialState.RUNNING,
}


@dataclass
class SynthTrial:
    """One config as the driver records it; params use study names (reward.<term>)."""

    config_id: str
    params: dict
    seeds: list[dict] = field(default_factory=list)
    kind: str = "hp"
    cycle: int = 1
    state: str = "complete"

    def score(self) -> dict | None:
        """Score of the true metric over seeds (mean, iqm, ci95, n_seeds), None if no seed."""
        values = np.asarray([s["episode_reward_mean"] for s in self.seeds], dtype=float)
        if values.size == 0:
            return None
        lo, hi = np.percentile(values, [2.5, 97.5]) if values.size > 1 else (values[0], values[0])
        q = np.sort(values)[values.size // 4 : values.size - values.size // 4] if values.size > 3 else values
        return {"mean": float(values.mean()), "iqm": float(q.mean()), "ci95": [float(lo), float(hi)],
                "n_seeds": int(values.size)}


def sample_params(rng: np.random.Generator) -> dict:
    """A random point of SPACE (log-uniform where the distribution is log)."""
    return {
        "learning_rate": float(10 ** rng.uniform(-5, -2)),
        "entropy_loss_scale": float(10 ** rng.uniform(-4, -1)),
        "learning_epochs": int(rng.integers(2, 11)),
        "policy_hidden_layer_sizes": str(rng.choice(SPACE["policy_hidden_layer_sizes"].choices)),
        "reward.collision": float(rng.uniform(-5.0, 0.0)),
    }


def known_answer_value(params: dict) -> float:
    """True metric depending only on DRIVERS: peak at learning_rate=3e-4, collision=-2.5."""
    lr_term = (math.log10(params["learning_rate"]) + 3.5) ** 2  # in [0, 2.25]
    col_term = ((params["reward.collision"] + 2.5) / 1.7) ** 2  # in [0, ~2.2]
    return 10.0 - lr_term - col_term


def _seed_record(seed: int, value: float) -> dict:
    """Per-seed dict with every field the driver records; shaped return tracks the true one."""
    return {"seed": seed, "state": "complete", "episode_reward_mean": value,
            "success_rate": float(1 / (1 + math.exp(-(value - 8.0)))),
            "shaped_return": 10.0 * value + 5.0, "reference_return": value,
            "steps": 2048, "wall_s": 1.5}


def make_trials(n_configs: int = 40, n_seeds: int = 3, *, noise: float = 0.0, signal: float = 1.0,
                seed: int = 0, value_fn: Callable[[dict], float] = known_answer_value,
                kind: str = "hp") -> list[SynthTrial]:
    """Complete configs whose per-seed value is signal * value_fn(params) + noise * N(0, 1)."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n_configs):
        params = sample_params(rng)
        base = signal * value_fn(params)
        seeds = [_seed_record(s, float(base + noise * rng.standard_normal())) for s in range(n_seeds)]
        trials.append(SynthTrial(f"config_{i:03d}", params, seeds, kind=kind, cycle=1 + i // 10))
    return trials


def _decode(name: str, value):
    """State-file view of a study value: net-arch strings back to lists, as space.py does."""
    if name == "policy_hidden_layer_sizes" and isinstance(value, str):
        return [int(x) for x in value.split("-")]
    return value


def _add_study_trial(study: optuna.Study, trial: SynthTrial, omit: tuple[str, ...]) -> None:
    params = {k: v for k, v in trial.params.items() if k not in omit}
    score = trial.score()
    state = _STATE_TO_OPTUNA[trial.state]
    value = score["mean"] if state == TrialState.COMPLETE and score else None
    if value is not None and not math.isfinite(value):
        state, value = TrialState.FAIL, None  # what Optuna's tell() does with a NaN objective
    attrs = {"config_id": trial.config_id, "kind": trial.kind, "cycle": trial.cycle,
             "state": trial.state, "seeds": trial.seeds, "score": score}  # as records.py does
    if trial.state == "rejected":
        attrs["rejected"] = True
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value, params=params,
        distributions={k: SPACE[k] for k in params}, user_attrs=attrs))


class _NoAliasDumper(yaml.SafeDumper):
    """Plain YAML like state.py writes: shared dicts are repeated, not written as &anchors."""

    def ignore_aliases(self, data):
        return True


def _state_file(trials: list[SynthTrial], status: str, env: str) -> dict:
    """automl_state.yaml contents in the DESIGN.md layout."""
    records = []
    for t in trials:
        records.append({
            "config_id": t.config_id, "kind": t.kind, "cycle": t.cycle, "state": t.state,
            "params": {k: _decode(k, v) for k, v in t.params.items() if not k.startswith("reward.")},
            "reward_weights": {k[len("reward."):]: v for k, v in t.params.items() if k.startswith("reward.")},
            "seeds": t.seeds, "score": t.score()})
    done = [r for r in records if r["state"] == "complete" and r["score"]]
    best = max(done, key=lambda r: r["score"]["mean"]) if done else None
    return {"version": 1, "command": "automl --mode stage (synthetic)", "status": status, "env": env,
            "budget": {"hours": 1.0, "elapsed_s": 10.0, "remaining_s": 3590.0, "deadline": None},
            "stage": {"index": 1, "kind": "hp", "cycle": 1},
            "seeds": {"tuning": [0, 1, 2], "heldout": [1000, 1001, 1002]},
            "best": best and {k: best[k] for k in ("config_id", "params", "reward_weights", "score")},
            "trials": records, "alarms": []}


def write_run(run_dir: Path, trials: list[SynthTrial], *, study: bool = True, state: bool = True,
              status: str = "finished", env: str = "navigation",
              omit_in_study: dict[str, tuple[str, ...]] | None = None) -> Path:
    """Write <run_dir>/study.db and/or automl_state.yaml for trials; returns run_dir.

    omit_in_study maps a trial kind to params left out of its study params (e.g. reward
    weights the HP phase held fixed), while the state file still records them.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    omit_in_study = omit_in_study or {}
    if study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st = optuna.create_study(storage=f"sqlite:///{run_dir / 'study.db'}", study_name="automl",
                                 direction="maximize")
        for t in trials:
            _add_study_trial(st, t, omit_in_study.get(t.kind, ()))
    if state:
        text = yaml.dump(_state_file(trials, status, env), Dumper=_NoAliasDumper, sort_keys=False)
        (run_dir / "automl_state.yaml").write_text(text)
    return run_dir

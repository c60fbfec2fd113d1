"""`automl export --format yaml|rlzoo`: the best config of a run, for reuse."""
from __future__ import annotations

from pathlib import Path

from automl.setup import load_state_yaml
from automl.state import dump_yaml, atomic_write_text


def _rlzoo(best: dict) -> dict:
    """rl-zoo3 hyperparams format: {env_id: {policy, n_envs, n_timesteps, PPO args...}}."""
    sb3 = best["sb3"]
    kw = dict(sb3["ppo_kwargs"])
    hp = {"policy": "MlpPolicy", "n_envs": sb3["num_envs"], "n_timesteps": float(sb3["n_timesteps"])}
    if sb3.get("normalize"):
        hp["normalize"] = True
    pk = kw.pop("policy_kwargs", None)
    if sb3.get("learning_rate_schedule") == "linear":
        kw["learning_rate"] = f"lin_{kw['learning_rate']}"
    hp.update({k: v for k, v in kw.items() if v is not None})
    if pk:
        hp["policy_kwargs"] = "dict(" + ", ".join(f"{k}={v!r}" for k, v in pk.items()) + ")"
    return {best["env"]: hp}


def _flat(best: dict) -> dict:
    """The best config alone (env, params, reward weights): `automl train --config` takes it back."""
    return {"config_id": best["config_id"], "env": best["env"],
            "search_space_id": best.get("search_space_id"), "params": best["params"],
            "reward_weights": best.get("reward_weights") or {},
            "heldout_score": best.get("heldout_score"), "tuning_score": best.get("tuning_score")}


def export(run_dir: str, *, fmt: str = "yaml", output: str | None = None) -> Path:
    """Write best.yaml's config as `fmt` and return the path written."""
    best = load_state_yaml(Path(run_dir) / "best.yaml")
    data = _rlzoo(best) if fmt == "rlzoo" else _flat(best)
    path = Path(output) if output else Path(run_dir) / ("rlzoo_hyperparams.yml" if fmt == "rlzoo" else "best_config.yaml")
    atomic_write_text(path, dump_yaml(data))
    return path

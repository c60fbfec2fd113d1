"""`automl export --format yaml|rlzoo`: the best config of a run, for reuse.

The rlzoo format is a hyperparams file as rl-zoo3 writes its own (hyperparams/ppo.yml): the top
key is a registered gymnasium id (``automl/Navigation-v0`` for a batched task), ``n_timesteps``
and ``n_envs`` are integers, ``learning_rate`` is a number or ``lin_<number>`` (rl-zoo3's linear
schedule), ``policy_kwargs`` is one Python expression in double quotes that rl-zoo3 ``eval``s.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from automl.core.errors import AutoMLError
from automl.run.state import atomic_write_text, dump_yaml, load_state_yaml

# rl-zoo3's usual key order; any other PPO argument follows
ZOO_ORDER = ("n_envs", "n_timesteps", "policy", "normalize", "n_steps", "batch_size", "n_epochs", "gamma",
             "gae_lambda", "clip_range", "clip_range_vf", "ent_coef", "vf_coef", "max_grad_norm", "target_kl",
             "learning_rate", "policy_kwargs")
REWARD_WRAPPER = "envs.RewardTermsWrapper"


# The gymnasium ids envs/__init__.py registers for the batched tasks (written out, so that exporting
# imports no torch; tests/test_export.py checks them against the registry).
TASK_GYM_IDS = {"cartpole": "automl/CartPole-v0", "navigation": "automl/Navigation-v0",
                "acrobot": "automl/Acrobot-v0", "pendulum": "automl/Pendulum-v0",
                "mountaincar": "automl/MountainCar-v0"}


def gym_id(env: str) -> str:
    """The gymnasium id rl-zoo3 is given: a batched task's registered id, else ``env`` itself."""
    return TASK_GYM_IDS.get(env, env)


def python_expr(value) -> str:
    """A Python expression for ``value`` in rl-zoo3's style: dict(a=1, b=[2, 3])."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return "dict(" + ", ".join(f"{k}={python_expr(v)}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{k!r}: {python_expr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_expr(v) for v in value) + "]"
    return repr(value)


def rlzoo_hyperparams(best: dict, *, where: str = "best.yaml") -> tuple[str, dict]:
    """(gymnasium id, rl-zoo3 hyperparams) of best.yaml's config, values as rl-zoo3 reads them."""
    sb3 = best["sb3"]
    kw = {k: v for k, v in dict(sb3["ppo_kwargs"]).items() if v is not None}
    steps = sb3.get("n_timesteps") or best.get("params", {}).get("n_timesteps")
    if not steps:
        raise AutoMLError(f"{where}: sb3.n_timesteps: missing (allowed: the steps each config was trained for)")
    hp: dict = {"n_envs": int(sb3["num_envs"]), "n_timesteps": int(steps), "policy": kw.pop("policy", "MlpPolicy")}
    if sb3.get("normalize"):
        hp["normalize"] = True
    policy_kwargs = kw.pop("policy_kwargs", None)
    learning_rate = float(kw.pop("learning_rate", 3e-4))
    hp.update(kw)
    hp["learning_rate"] = (f"lin_{learning_rate!r}" if sb3.get("learning_rate_schedule") == "linear"
                           else learning_rate)
    if policy_kwargs:
        hp["policy_kwargs"] = python_expr(policy_kwargs)
    env_id = gym_id(best["env"])
    weights = {k: float(v) for k, v in (best.get("reward_weights") or {}).items()}
    if weights and env_id != best["env"]:  # a batched task: its gymnasium env takes the weights
        hp["env_kwargs"] = {"reward_weights": weights}
    elif weights:  # a gymnasium id: the weighted reward terms come from the same wrapper automl used
        hp["env_wrapper"] = [{REWARD_WRAPPER: {"weights": weights}}]
    order = {k: i for i, k in enumerate(ZOO_ORDER)}
    return env_id, dict(sorted(hp.items(), key=lambda kv: order.get(kv[0], len(order))))


def _scalar(value) -> str:
    """One YAML scalar written as rl-zoo3's files write it (!!float 1e-05, 'MlpPolicy', "dict(...)")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return yaml.safe_dump(value).split("\n")[0]  # .inf / .nan
        text = repr(value)
        return text if yaml.safe_load(text) == value else f"!!float {text}"  # PyYAML reads 1e-05 as a string
    text = str(value)
    if text.startswith("lin_") and yaml.safe_load(text) == text:
        return text  # rl-zoo3 writes its schedules bare: lin_0.001
    if text.startswith(("dict(", "{", "[")) or "'" in text:
        return json.dumps(text)  # a Python expression for rl-zoo3's eval: one double-quoted string
    return f"'{text}'"


def _key(text: str) -> str:
    """A top-level key: plain when YAML reads it back unchanged (automl/Navigation-v0), else quoted."""
    return text if yaml.safe_load(f"{text}: 0") == {text: 0} else json.dumps(text)


def rlzoo_text(best: dict, filename: str = "rlzoo_hyperparams.yml") -> str:
    """The rl-zoo3 hyperparams file of best.yaml's config, with a comment saying how to use it."""
    env_id, hp = rlzoo_hyperparams(best)
    score = best.get("heldout_score") or {}
    iqm = f", held-out IQM {score['iqm']:.3g}" if isinstance(score.get("iqm"), (int, float)) else ""
    packages = " --gym-packages envs" if env_id != best["env"] else ""
    lines = [f"# rl-zoo3 hyperparameters exported by automl (config {best['config_id']}{iqm})",
             f"# use, from the automl repository root: python -m rl_zoo3.train --algo ppo --env {env_id}"
             f"{packages} -conf {filename}",
             *(["# a --mode pbt winner: these are its final values; its schedule over training is in best.yaml"]
               if best.get("schedule") else []),
             f"{_key(env_id)}:"]
    for key, value in hp.items():
        if isinstance(value, (dict, list)):
            block = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)
            lines += ["  " + line for line in block.rstrip("\n").split("\n")]
        else:
            lines.append(f"  {key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _flat(best: dict) -> dict:
    """The best config alone (env, params, reward weights): `automl train --config` takes it back."""
    return {"config_id": best["config_id"], "env": best["env"],
            "search_space_id": best.get("search_space_id"), "params": best["params"],
            "reward_weights": best.get("reward_weights") or {},
            "heldout_score": best.get("heldout_score"), "tuning_score": best.get("tuning_score")}


def export(run_dir: str, *, fmt: str = "yaml", output: str | None = None) -> Path:
    """Write best.yaml's config as `fmt` and return the path written."""
    best = load_state_yaml(Path(run_dir) / "best.yaml")
    path = Path(output) if output else Path(run_dir) / ("rlzoo_hyperparams.yml" if fmt == "rlzoo" else "best_config.yaml")
    text = rlzoo_text(best, path.name) if fmt == "rlzoo" else dump_yaml(_flat(best))
    atomic_write_text(path, text)
    return path

"""Named reward terms and their weights: reward = sum_i w_i * term_i, batched.

Term names, default weights, search bounds and reference weights come from
``configs/rewards/<task>.yaml``. ``RewardTermsWrapper`` applies the same scheme to any
gymnasium env that reports its terms in ``info`` (e.g. MuJoCo Hopper-v5), keeping the
env's own reward as the true metric.
"""
from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
_FIELDS = ("default", "low", "high", "reference")


def _config_path(task: str) -> Path:
    return CONFIG_DIR / "rewards" / f"{task}.yaml"


@lru_cache(maxsize=None)
def _load(task: str) -> dict:
    path = _config_path(task)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.stem for p in (CONFIG_DIR / "rewards").glob("*.yaml"))
        raise ValueError(f"{path}: task: no reward config for {task!r} (allowed: {', '.join(known)})") from None
    terms = {}
    for name, spec in (raw.get("terms") or {}).items():
        missing = [f for f in _FIELDS if f not in spec]
        if missing:
            raise ValueError(f"{path}: terms.{name}: missing {', '.join(missing)} (allowed: {', '.join(_FIELDS)})")
        terms[name] = {f: float(spec[f]) for f in _FIELDS}
        if not terms[name]["low"] <= terms[name]["default"] <= terms[name]["high"]:
            raise ValueError(f"{path}: terms.{name}.default: outside [low, high]")
    metric = raw.get("true_metric", "reference_return")
    if metric not in ("success_rate", "reference_return"):
        raise ValueError(f"{path}: true_metric: {metric!r} (allowed: success_rate, reference_return)")
    return {"true_metric": metric, "terms": terms}


def reward_config(task: str) -> dict:
    """{true_metric, terms: {name: {default, low, high, reference}}} for a task (a fresh copy)."""
    cfg = _load(task)
    return {"true_metric": cfg["true_metric"], "terms": {k: dict(v) for k, v in cfg["terms"].items()}}


def resolve_weights(terms: Mapping[str, Mapping[str, float]], weights: Mapping[str, float] | None,
                    *, where: str = "reward_weights") -> dict[str, float]:
    """Defaults overlaid with ``weights``; unknown names or out-of-bound values raise ValueError."""
    resolved = {name: spec["default"] for name, spec in terms.items()}
    for name, value in (weights or {}).items():
        if name not in terms:
            raise ValueError(f"{where}: {name}: unknown reward term (allowed: {', '.join(terms)})")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {name}: weight {value!r} is not a number") from None
        low, high = terms[name]["low"], terms[name]["high"]
        if not (low <= value <= high) or math.isnan(value):
            raise ValueError(f"{where}: {name}: weight {value} outside its bounds (allowed: [{low}, {high}])")
        resolved[name] = value
    return resolved


class RewardTermsWrapper(gym.Wrapper):
    """Reward = sum_i w_i * info[term_i] for a gymnasium env that reports terms in ``info``.

    The env's own reward is kept as the true metric: at episode end ``info`` carries
    ``episode`` {r: shaped return, l, t}, ``true_return`` (sum of the original rewards) and
    ``terms`` {name: episode sum}. ``terms`` defaults to the ``reward_*`` keys seen in the first
    step's info (so Hopper-v5 gives forward, ctrl, survive); ``weights`` default to 1.0, which
    reproduces the original reward when the terms add up to it.
    """

    def __init__(self, env: gym.Env, weights: Mapping[str, float] | None = None,
                 terms: tuple[str, ...] | list[str] | None = None):
        super().__init__(env)
        self._names = tuple(terms) if terms is not None else None
        self._requested = dict(weights or {})
        if self._names is not None:
            self._set_weights()
        self._start = time.perf_counter()

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change the weights from the next step on (population-based training); unnamed terms keep theirs."""
        self._requested = {**self._requested, **dict(weights)}
        if self._names is not None:
            self._set_weights()

    def _set_weights(self) -> None:
        names = self._names
        assert names is not None  # every caller sets or checks the names first
        spec = {n: {"default": 1.0, "low": -math.inf, "high": math.inf} for n in names}
        self.reward_weights = resolve_weights(spec, self._requested)
        self.reward_terms = names

    def _discover(self, info: Mapping[str, Any]) -> None:
        # "reward_forward" -> "forward" etc.; kept in info order so runs are reproducible.
        names = tuple(k[len("reward_"):] for k in info if k.startswith("reward_"))
        if not names:
            raise ValueError(f"RewardTermsWrapper: info: no reward_* terms reported by {self.env.spec.id if self.env.spec else self.env} (allowed: pass terms=...)")
        self._names = names
        self._set_weights()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._sums = {}
        self._true, self._shaped, self._length = 0.0, 0.0, 0
        self._start = time.perf_counter()
        return obs, info

    def _term_value(self, info: Mapping[str, Any], name: str) -> float:
        for key in (f"reward_{name}", name):
            if key in info:
                return float(info[key])
        raise ValueError(f"RewardTermsWrapper: info: term {name!r} missing (allowed: {', '.join(k for k in info)})")

    def step(self, action):
        obs, true_reward, terminated, truncated, info = self.env.step(action)
        if self._names is None:
            self._discover(info)
        values = {n: self._term_value(info, n) for n in self._names}
        reward = float(sum(self.reward_weights[n] * v for n, v in values.items()))
        for n, v in values.items():
            self._sums[n] = self._sums.get(n, 0.0) + v
        self._true += float(true_reward)
        self._shaped += reward
        self._length += 1
        if terminated or truncated:
            info = dict(info)
            info["episode"] = {"r": self._shaped, "l": self._length,
                               "t": round(time.perf_counter() - self._start, 6)}
            info["true_return"] = self._true
            info["terms"] = dict(self._sums)
        return obs, reward, terminated, truncated, info

"""stable-baselines3 VecEnv adapter for the batched torch envs (numpy at the boundary).

Per step it copies obs, rewards and the two done masks to the host once; episode infos are
built only for envs that finished, from one host copy of their rows (no per-env tensor
reads). Finished envs get ``episode`` {r, l, t} (so SB3's ep_rew_mean works without a
Monitor), ``true_return``, ``terms``, ``terminal_observation``, ``TimeLimit.truncated`` and,
for tasks whose true metric is the success rate, ``is_success``.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from .batched import LENGTH, N_STATS, RETURN, SUCCESS, TRUE_RETURN, BatchedEnv


def _host(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous numpy copy (the env reuses its buffers on the next step)."""
    if tensor.device.type == "cpu":
        return tensor.numpy().copy()
    return np.ascontiguousarray(tensor.cpu().numpy())


class TorchVecEnv(VecEnv):
    """A ``BatchedEnv`` seen as an SB3 ``VecEnv``; ``env`` is the batched env."""

    def __init__(self, env: BatchedEnv):
        self.env = env
        self.render_mode = None
        super().__init__(env.num_envs, env.observation_space, env.action_space)
        self._discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self._has_success = env.true_metric == "success_rate"
        self._actions: torch.Tensor | None = None
        self._start = time.perf_counter()
        self._blank: list[dict] = [{} for _ in range(env.num_envs)]

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        obs = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self._start = time.perf_counter()
        return _host(obs)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        n = self.num_envs
        if self._discrete:
            # SB3 hands Discrete actions as (n,) or (n, 1) integers.
            if actions.shape not in ((n,), (n, 1)):
                raise ValueError(f"actions: shape {actions.shape} (allowed: ({n},))")
            tensor = torch.as_tensor(actions.reshape(n), dtype=torch.int64)
        else:
            tensor = torch.as_tensor(actions, dtype=torch.float32)
        self._actions = tensor.to(self.env.device, non_blocking=True)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        flags = torch.stack((terminated, truncated)).cpu().numpy()
        dones = flags[0] | flags[1]
        # Envs that did not finish get empty dicts reused across steps (building 4096 dicts per
        # step costs more than the env); one is rebuilt if a consumer wrote into it.
        if any(self._blank):
            self._blank = [{} for _ in range(self.num_envs)]
        infos: list[dict[str, Any]] = self._blank.copy()
        if dones.any():
            self._episode_infos(infos, np.flatnonzero(dones), flags, info)
        return _host(obs), _host(reward), dones, infos

    def _episode_infos(self, infos: list[dict], idx: np.ndarray, flags: np.ndarray, info: dict) -> None:
        rows = torch.from_numpy(idx).to(self.env.device)
        # One host copy of the finished columns; tolist() makes the Python floats in C, and the
        # dicts are built column-wise by comprehensions (this loop is the adapter's main cost).
        stats = info["episode_stats"].index_select(1, rows).tolist()
        final = list(info["final_observation"].index_select(0, rows).cpu().numpy())
        truncated = (flags[1] & ~flags[0])[idx].tolist()
        elapsed = round(time.perf_counter() - self._start, 6)
        names = self.env.reward_terms
        terms = [dict(zip(names, values)) for values in zip(*stats[N_STATS:])]
        fields = zip(idx.tolist(), stats[RETURN], stats[LENGTH], stats[TRUE_RETURN], terms, final, truncated)
        for i, ret, length, true_return, term_sums, obs, trunc in fields:
            infos[i] = {"episode": {"r": ret, "l": int(length), "t": elapsed}, "true_return": true_return,
                        "terms": term_sums, "terminal_observation": obs, "TimeLimit.truncated": trunc}
        if self._has_success:
            for i, success in zip(idx.tolist(), stats[SUCCESS]):
                infos[i]["is_success"] = success > 0.5

    def close(self) -> None:
        self.env.close()

    # The batched env is one object: attribute access applies to all indices at once.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

"""Batched torch environments with weighted reward terms.

Public entry points: ``make`` (batched torch env), ``make_vec`` (stable-baselines3 VecEnv),
``TASKS``, ``reward_config``, ``RewardTermsWrapper``. The batched tasks are also registered
with gymnasium as ``automl/CartPole-v0``, ``automl/Navigation-v0``, ``automl/Acrobot-v0``,
``automl/Pendulum-v0`` and ``automl/MountainCar-v0`` (single env, numpy).
This package never imports ``automl``.
"""
from __future__ import annotations

from typing import Mapping

import torch

from .batched import BatchedEnv, resolve_device
from .reward_terms import RewardTermsWrapper, reward_config, resolve_weights
from .tasks.acrobot import Acrobot
from .tasks.cartpole import CartPole
from .tasks.mountaincar import MountainCar
from .tasks.navigation import Navigation
from .tasks.pendulum import Pendulum

_TASK_CLASSES = {"cartpole": CartPole, "navigation": Navigation, "acrobot": Acrobot, "pendulum": Pendulum,
                 "mountaincar": MountainCar}
TASKS = tuple(_TASK_CLASSES)

__all__ = ["TASKS", "make", "make_vec", "max_episode_steps", "reward_config", "RewardTermsWrapper", "BatchedEnv",
           "resolve_device", "resolve_weights"]


def _task_class(task: str) -> type[BatchedEnv]:
    if task not in _TASK_CLASSES:
        raise ValueError(f"task: unknown task {task!r} (allowed: {', '.join(TASKS)})")
    return _TASK_CLASSES[task]


def max_episode_steps(task: str) -> int:
    """The task's episode time limit in steps."""
    return int(_task_class(task).max_episode_steps)


def make(task: str, num_envs: int, device: str | torch.device = "auto", seed: int = 0,
         reward_weights: Mapping[str, float] | None = None, **kwargs) -> BatchedEnv:
    """The batched env for ``task`` (``reset()`` first), torch tensors on ``env.device``."""
    return _task_class(task)(num_envs, device=device, seed=seed, reward_weights=reward_weights, **kwargs)


def make_vec(task: str, num_envs: int, device: str | torch.device = "auto", seed: int = 0,
             reward_weights: Mapping[str, float] | None = None, **kwargs):
    """The batched env behind stable-baselines3's VecEnv interface (numpy at the boundary)."""
    from .vec import TorchVecEnv  # SB3 import deferred: make() works without it

    return TorchVecEnv(make(task, num_envs, device=device, seed=seed, reward_weights=reward_weights, **kwargs))


def _register() -> None:
    import gymnasium as gym

    for task, cls in _TASK_CLASSES.items():
        env_id = f"automl/{cls.__name__}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="envs.single:SingleEnv",
                         kwargs={"task": task}, max_episode_steps=None)


_register()

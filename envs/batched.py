"""Batched torch environments: many envs stepped by one set of tensor ops on one device.

A task subclasses ``BatchedEnv`` and implements ``_build`` (allocate state), ``_reset_all``,
``_advance`` (physics + reward terms) and ``_autoreset`` (masked reset of finished envs).
The base keeps the reward terms, the shaped and reference returns, episode lengths and
per-term episode sums, and copies them into ``info`` when an episode ends.

Speed notes (why the code looks the way it does): at a few thousand envs one torch op
costs a few microseconds regardless of size, so every step is a fixed, short list of
in-place ops on preallocated buffers; buffers are feature-major ([features, num_envs])
because reductions and masks over a leading dimension are several times faster than over
a trailing one; finished envs are blended with ``lerp_`` by a 0/1 float mask (exact at
0 and 1) instead of boolean indexing or ``torch.where``, so there is no host sync and no
Python branch on the data. Returned tensors are the env's own buffers: they are valid
until the next ``step``; ``clone()`` them to keep them.
"""
from __future__ import annotations

from typing import Mapping, cast

import gymnasium as gym
import torch

from .reward_terms import reward_config, resolve_weights

# Rows of the episode-statistics buffers; reward terms follow from row N_STATS on.
RETURN, TRUE_RETURN, LENGTH, SUCCESS = 0, 1, 2, 3
N_STATS = 4


def normalize_device(device: str | torch.device, current_index: int | None = None) -> torch.device:
    """The one spelling of a device: an index-less accelerator (``cuda``) gets its index (``cuda:0``).

    ``torch.device("cuda") != torch.device("cuda:0")``, yet a tensor made on ``cuda`` reports
    ``cuda:<current index>``: device checks compare normalised devices. ``current_index`` defaults
    to ``torch.cuda.current_device()`` (asked only for an index-less cuda device), 0 for other types.
    """
    device = torch.device(device)
    if device.type == "cpu" or device.index is not None:
        return device
    if current_index is None:
        current_index = torch.cuda.current_device() if device.type == "cuda" else 0
    return torch.device(device.type, int(current_index))


def same_device(a: str | torch.device, b: str | torch.device, current_index: int | None = None) -> bool:
    """Whether ``a`` and ``b`` name the same device once normalised (``cuda`` == ``cuda:0`` on device 0)."""
    return normalize_device(a, current_index) == normalize_device(b, current_index)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else must be a valid torch device.

    The result is normalised (``cuda`` -> ``cuda:<current index>``): the only place devices get their index.
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {device!r} is not a torch device (allowed: auto, cpu, cuda, cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available (allowed: auto, cpu)")
    return normalize_device(resolved)


class BatchedEnv:
    """Base of the batched tasks: reward terms, episode statistics, auto-reset, seeding.

    ``step(actions) -> (obs, reward, terminated, truncated, info)``; all tensors have
    num_envs as first dimension and live on ``device``. ``info`` holds, for envs whose
    episode ended in this step (``terminated | truncated``): ``final_observation``
    (the observation before the auto-reset), ``episode_return`` (shaped), ``true_return``
    (reference weights), ``episode_length``, ``is_success`` and ``terms`` {name: episode sum}.
    Rows of envs that did not finish hold their previous episode's values.
    """

    task = ""
    max_episode_steps = 0
    render_mode = None
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    obs: torch.Tensor                # set by the task's _build: [num_envs, obs_dim] view of its buffer
    final_observation: torch.Tensor  # set by the task's _build: the observations before an auto-reset

    def __init__(self, num_envs: int, device: str | torch.device = "auto", seed: int = 0,
                 reward_weights: Mapping[str, float] | None = None, dtype: torch.dtype = torch.float32):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: {num_envs!r} is not a positive integer (allowed: 1, 2, ...)")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: {dtype} (allowed: torch.float32, torch.float64)")
        self.num_envs, self.device, self.dtype = num_envs, resolve_device(device), dtype
        cfg = reward_config(self.task)
        self.true_metric = cfg["true_metric"]
        self.reward_terms = tuple(cfg["terms"])
        self.reward_weights = resolve_weights(cfg["terms"], reward_weights)
        self.reference_weights = {k: v["reference"] for k, v in cfg["terms"].items()}
        weights = [[self.reward_weights[k] for k in self.reward_terms],
                   [self.reference_weights[k] for k in self.reward_terms]]
        self._weights = self._tensor(weights).T[:, :, None].contiguous()  # [T, 2, 1]: shaped, reference
        rows = N_STATS + len(self.reward_terms)
        self._inc = self._zeros(rows, num_envs)                      # this step's increments
        self._inc[LENGTH] = 1.0
        self.reward = self._inc[RETURN]                              # this step's shaped reward
        self.terms = self._inc[N_STATS:]                             # tasks write term values here
        self._weighted = self._zeros(len(self.reward_terms), 2, num_envs)
        self._terms_col = self.terms.unsqueeze(1)                    # [T, 1, N] view
        self._rewards = self._inc[:N_STATS - 2]                      # shaped, reference rows
        self._stats = self._zeros(rows, num_envs)                    # running episode sums
        self._length = self._stats[LENGTH]
        self._final = self._zeros(rows, num_envs)                    # last finished episode
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(int(seed))
        self._steps = 0
        self._build()
        # Box and Discrete spaces (the tasks' kinds) always have a shape; Space.shape's type allows None
        self._action_shape = (num_envs, *cast("tuple[int, ...]", self.action_space.shape))
        self._action_dtype = torch.int64 if isinstance(self.action_space, gym.spaces.Discrete) else torch.float32
        self.info = self._make_info()

    # -- helpers for subclasses -------------------------------------------------------
    def _zeros(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype or self.dtype, device=self.device)

    def _tensor(self, data, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype or self.dtype, device=self.device)

    def _make_info(self) -> dict:
        # Views into self._final: built once, so a step costs nothing for its info.
        final = self._final
        return {
            "final_observation": self.final_observation,
            "episode_return": final[RETURN],
            "true_return": final[TRUE_RETURN],
            "episode_length": final[LENGTH],
            "is_success": final[SUCCESS],
            "terms": {name: final[N_STATS + i] for i, name in enumerate(self.reward_terms)},
            "episode_stats": final,  # all rows at once: RETURN, TRUE_RETURN, LENGTH, SUCCESS, terms...
        }

    # -- public API ---------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Reseed the env's generator; the next ``reset()`` starts the same episodes as any env with this seed."""
        self._generator.manual_seed(int(seed))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every env and its statistics; returns the first observations [num_envs, obs_dim]."""
        if seed is not None:
            self.seed(seed)
        self._stats.zero_()
        self._final.zero_()
        self._steps = 0
        self._reset_all()
        return self.obs

    def set_reward_weights(self, weights: Mapping[str, float]) -> None:
        """Change the shaped reward's weights from the next step on (population-based training); names
        missing from ``weights`` keep their value, unknown names are a ValueError."""
        merged = resolve_weights(reward_config(self.task)["terms"], {**self.reward_weights, **dict(weights)})
        self.reward_weights = merged
        self._weights[:, 0, 0] = self._tensor([merged[k] for k in self.reward_terms])

    def step(self, actions: torch.Tensor):
        """Advance every env one step, auto-resetting those whose episode ended."""
        self._check_actions(actions)
        terminated = self._advance(actions)
        inc, stats = self._inc, self._stats
        # shaped and reference reward: mul + sum over the leading dim (mm would start BLAS threads)
        torch.sum(torch.mul(self._weights, self._terms_col, out=self._weighted), 0, out=self._rewards)
        stats += inc
        truncated = self._length >= self.max_episode_steps
        done = terminated | truncated
        done_f = done.to(self.dtype)
        keep = 1.0 - done_f
        self._final.lerp_(stats, done_f)  # copy finished episodes' sums (exact for weights 0/1)
        stats.mul_(keep)
        self._autoreset(done_f, keep)
        self._steps += 1
        return self.obs, self.reward, terminated, truncated, self.info

    def close(self) -> None:
        """Nothing to release; present for API symmetry with gymnasium."""

    def _check_actions(self, actions) -> None:
        if not isinstance(actions, torch.Tensor):
            raise ValueError(f"actions: expected a torch.Tensor, got {type(actions).__name__} "
                             f"(allowed: shape {tuple(self._action_shape)}, dtype {self._action_dtype})")
        if actions.shape != self._action_shape or actions.dtype != self._action_dtype:
            raise ValueError(f"actions: shape {tuple(actions.shape)} dtype {actions.dtype} "
                             f"(allowed: shape {tuple(self._action_shape)}, dtype {self._action_dtype})")
        if actions.device != self.device and not same_device(actions.device, self.device):
            raise ValueError(f"actions: on {actions.device} (allowed: {self.device})")

    # -- task hooks -----------------------------------------------------------------------
    def _build(self) -> None:
        """Allocate state buffers, ``self.obs`` and ``self.final_observation``."""
        raise NotImplementedError

    def _reset_all(self) -> None:
        """Start new episodes in every env and write ``self.obs``."""
        raise NotImplementedError

    def _advance(self, actions: torch.Tensor) -> torch.Tensor:
        """Physics; fill ``self.terms`` (and ``self._inc[SUCCESS]``); return terminated (bool [N])."""
        raise NotImplementedError

    def _autoreset(self, done_f: torch.Tensor, keep: torch.Tensor) -> None:
        """Save pre-reset obs into ``final_observation``, restart envs where done_f == 1, refresh ``obs``."""
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor the env holds (for device checks)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.Tensor)}

    def state_dict(self) -> dict:
        """Everything the next steps depend on (CPU copies): every tensor, the generator, the step count.

        ``load_state_dict`` on an env built with the same task, size, dtype and weights makes it
        continue exactly as this one would (training checkpoints).
        """
        return {"tensors": {k: v.detach().cpu().clone() for k, v in self.tensors().items()},
                "generator": self._generator.get_state(), "steps": int(self._steps)}

    def load_state_dict(self, state: Mapping) -> None:
        """Copy a ``state_dict()`` into this env's buffers in place (views stay valid)."""
        mine, saved = self.tensors(), state["tensors"]
        if set(mine) != set(saved) or any(mine[k].shape != saved[k].shape for k in mine):
            raise ValueError("env state: tensors do not match this env (allowed: a state_dict of the same task and size)")
        for k, tensor in mine.items():
            tensor.copy_(saved[k])
        self._generator.set_state(state["generator"])
        self._steps = int(state["steps"])


class PhysicalState:
    """``set_state``/``state``, reset and auto-reset for a task whose physical state is one feature-major
    buffer ``_state`` ([features, num_envs]) whose observations ``_observe`` writes. Ended episodes restart
    from a reset pool ``_pool`` that ``_draw`` refills every ``POOL_REFRESH`` steps (a task sets it no longer
    than its shortest possible episode, so every restart is a fresh draw)."""

    POOL_REFRESH = 1
    _state: torch.Tensor
    _pool: torch.Tensor
    _final_buf: torch.Tensor
    _steps: int

    def _observe(self, out: torch.Tensor | None = None) -> None:
        """Write the observations of the current state into ``out`` (default: the obs buffer)."""
        raise NotImplementedError

    def _draw(self, out: torch.Tensor) -> None:
        """Fill ``out`` ([features, num_envs]) with fresh reset states."""
        raise NotImplementedError

    def _reset_all(self) -> None:
        self._draw(self._state)
        self._observe()

    def _autoreset(self, done_f: torch.Tensor, keep: torch.Tensor) -> None:
        if self._steps % self.POOL_REFRESH == 0:
            self._draw(self._pool)
        self._observe(self._final_buf)  # the observation before the reset
        self._state.lerp_(self._pool, done_f)
        self._observe()

    def set_state(self, state: torch.Tensor) -> None:
        """Overwrite the physical state ([num_envs, features]); for parity tests against gymnasium."""
        self._state.copy_(state.T)
        self._observe()

    @property
    def state(self) -> torch.Tensor:
        """Physical state [num_envs, features] (a view)."""
        return self._state.T

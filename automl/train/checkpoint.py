"""Seed-job checkpoints: one small torch file per job, written atomically, with a header naming its job.

A checkpoint is ``{"header": {...}, "state": {...}}`` saved with ``torch.save`` and holding only
plain dicts, lists, numbers, strings and tensors, so it loads with ``weights_only=True``.
``save`` writes a temp file in the same directory, fsyncs it and renames it over the old one: a
kill at any moment leaves either the previous checkpoint or the new one, never a half-written
file. What goes into ``state`` is the trainers' business (``sb3_state``, ``torch_state``); this module
stores it, builds and checks the header (``job_header``), and deletes (``remove``, for the driver once a
result is recorded).
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import tempfile
from typing import Any, Mapping

import torch

FORMAT = 1
_TMP_SUFFIX = ".tmp"


class CheckpointError(Exception):
    """The file exists but is not a readable checkpoint of this format."""


def _temp_pattern(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), glob.escape(os.path.basename(path)) + ".*" + _TMP_SUFFIX)


def save(path: str, header: Mapping[str, Any], state: Mapping[str, Any]) -> int:
    """Atomically replace ``path`` with a checkpoint of ``state``; returns its size in bytes."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"header": {"format": FORMAT, **header}, "state": dict(state)}, f)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return size


def load(path: str) -> dict:
    """The checkpoint at ``path`` ({"header", "state"}); CheckpointError if it cannot be read."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, unsafe type, I/O error...
        raise CheckpointError(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}") from exc
    if not (isinstance(data, dict) and isinstance(data.get("header"), dict) and isinstance(data.get("state"), dict)):
        raise CheckpointError("not a checkpoint (expected a dict with 'header' and 'state')")
    if data["header"].get("format") != FORMAT:
        raise CheckpointError(f"format {data['header'].get('format')!r} (allowed: {FORMAT})")
    return data


def mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """Why a checkpoint's header does not belong to the job described by ``expected`` (None: it does)."""
    diffs = [f"{key} {found.get(key)!r} != {value!r}" for key, value in expected.items() if found.get(key) != value]
    return ", ".join(diffs) or None


def load_matching(path: str, expected: Mapping[str, Any]) -> tuple[dict | None, str | None]:
    """(checkpoint, note): the checkpoint when ``path`` holds one whose header matches ``expected``.

    Never raises: a missing file is (None, None); an unreadable or foreign one is (None, why).
    """
    if not os.path.exists(path):
        return None, None
    try:
        data = load(path)
    except CheckpointError as exc:
        return None, f"checkpoint unreadable ({exc}); started from scratch"
    why = mismatch(data["header"], expected)
    if why:
        return None, f"checkpoint ignored (header: {why}); started from scratch"
    return data, None


def job_header(setup: Any, *, env: str, seed: int, total: int, reward_weights: Mapping | None,
               eval_every: int | None, eval_episodes: int, device: str) -> dict:
    """What a checkpoint must match to be resumed: the job's seed, steps, env, device and config."""
    config = {"ppo_kwargs": setup.ppo_kwargs, "num_envs": setup.num_envs, "normalize": setup.normalize,
              "schedule": setup.learning_rate_schedule, "reward_weights": dict(reward_weights or {}),
              "eval_every": eval_every, "eval_episodes": eval_episodes}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"seed": int(seed), "total_steps": int(total), "env": str(env), "device": torch.device(device).type,
            "config": digest}


def steps(path: str) -> int | None:
    """Env steps trained at the checkpoint at ``path``; None when there is none or it is unreadable."""
    try:
        return int(load(path)["header"]["steps"])
    except (CheckpointError, KeyError, TypeError, ValueError, OSError):
        return None


def remove(path: str) -> None:
    """Delete a checkpoint and any temp files a killed save left beside it (missing files are fine)."""
    for name in [path, *glob.glob(_temp_pattern(path))]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def leftovers(path: str) -> list[str]:
    """Temp files of interrupted saves of ``path`` (normally none)."""
    return sorted(glob.glob(_temp_pattern(path)))


def default_checkpoint_every(steps_per_s: float, seconds: float = 120.0, *, rollout: int) -> int:
    """Env steps between checkpoints: about ``seconds`` of training, whole rollouts, at least one."""
    if isinstance(rollout, bool) or not isinstance(rollout, int) or rollout < 1:
        raise ValueError(f"rollout: {rollout!r} (allowed: a positive integer, n_steps * num_envs)")
    if not (math.isfinite(steps_per_s) and steps_per_s > 0 and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"steps_per_s {steps_per_s!r}, seconds {seconds!r} (allowed: finite and > 0)")
    return max(1, round(steps_per_s * seconds / rollout)) * rollout

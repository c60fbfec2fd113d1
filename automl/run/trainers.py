"""The trainers' job functions (``--trainer``), as the real functions the executor pickles by reference.

``job_fn(trainer)`` trains one seed; ``batch_fn(trainer)`` trains all seeds of a config as one job
(None when the trainer has no seed axis); ``seed_fn(trainer, env)`` is the in-process function of
``automl train`` and ``automl.api.train_tuned`` (``auto`` resolved as a run resolves it). Importing this
module imports the trainers (torch, SB3): only the run's driver side does, never a read-only command.
"""
from __future__ import annotations

from typing import Callable

from automl.core.errors import AutoMLError
from automl.run.defaults import TRAINERS, default_trainer
from automl.train.sb3_train import run_job, train_seed
from automl.train.torch_train import run_job_torch, run_seeds_job_torch, train_seed_torch

JOB_FNS: dict[str, Callable] = {"sb3": run_job, "torch": run_job_torch}
BATCH_JOB_FNS: dict[str, Callable] = {"torch": run_seeds_job_torch}
SEED_FNS: dict[str, Callable] = {"sb3": train_seed, "torch": train_seed_torch}


def job_fn(trainer: str) -> Callable:
    """The seed-job function of ``trainer`` (a resolved name: sb3 | torch)."""
    return JOB_FNS[trainer]


def batch_fn(trainer: str) -> Callable | None:
    """The all-seeds-of-a-config job function of ``trainer``, or None."""
    return BATCH_JOB_FNS.get(trainer)


def resolve(trainer: str, env: str) -> str:
    """``--trainer`` for ``env``: auto is torch on the batched tasks, sb3 for gymnasium ids (as a run); torch on a
    gymnasium id is refused with one line."""
    import envs

    if trainer not in TRAINERS:
        raise AutoMLError(f"--trainer: {trainer!r} (allowed: {', '.join(TRAINERS)})")
    name = default_trainer(env) if trainer == "auto" else trainer
    if name == "torch" and env not in envs.TASKS:
        raise AutoMLError(f"--trainer torch: env {env!r} is not a batched task (allowed: {', '.join(envs.TASKS)}; "
                          "gymnasium ids train with --trainer sb3 or auto)")
    return name


def seed_fn(trainer: str, env: str) -> Callable:
    """``train_seed`` or ``train_seed_torch`` (same arguments, same SeedResult) for ``trainer`` on ``env``."""
    return SEED_FNS[resolve(trainer, env)]


def on_cuda(device: str) -> bool:
    """Whether seed jobs will run on a GPU (``auto`` picks CUDA when present)."""
    if device == "cpu":
        return False
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())

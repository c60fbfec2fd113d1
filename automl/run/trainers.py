"""The trainers' job functions (``--trainer``), as the real functions the executor pickles by reference.

``job_fn(trainer)`` trains one seed; ``batch_fn(trainer)`` trains all seeds of a config as one job
(None when the trainer has no seed axis). Importing this module imports the trainers (torch, SB3):
only the run's driver side does, never a read-only command.
"""
from __future__ import annotations

from typing import Callable

from automl.train.torch_train import run_job_torch, run_seeds_job_torch
from automl.train.training import run_job

JOB_FNS: dict[str, Callable] = {"sb3": run_job, "torch": run_job_torch}
BATCH_JOB_FNS: dict[str, Callable] = {"torch": run_seeds_job_torch}


def job_fn(trainer: str) -> Callable:
    """The seed-job function of ``trainer`` (a resolved name: sb3 | torch)."""
    return JOB_FNS[trainer]


def batch_fn(trainer: str) -> Callable | None:
    """The all-seeds-of-a-config job function of ``trainer``, or None."""
    return BATCH_JOB_FNS.get(trainer)


def on_cuda(device: str) -> bool:
    """Whether seed jobs will run on a GPU (``auto`` picks CUDA when present)."""
    if device == "cpu":
        return False
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())

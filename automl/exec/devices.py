"""Which GPU a job runs on: ``--devices cuda:0,cuda:1`` spreads the local worker processes over a
machine's GPUs (worker i gets devices[i % len(devices)] and sees only that GPU, so the job's
``cuda``/``auto`` device is it), and ``--gpus-per-job`` is Ray's own GPU request for each task
(Ray then sets the task's CUDA_VISIBLE_DEVICES). Standard library only: checked before torch loads.
"""
from __future__ import annotations

import re

from automl.core.errors import AutoMLError

DEVICE = re.compile(r"^(cpu|cuda:(\d+))$")
VISIBLE = "CUDA_VISIBLE_DEVICES"


def parse_devices(text) -> tuple[str, ...]:
    """``cuda:0,cuda:1`` (or a sequence) -> ('cuda:0', 'cuda:1'); one line for anything else."""
    items = [d.strip() for d in (text.split(",") if isinstance(text, str) else text or ())]
    bad = [d for d in items if not DEVICE.match(d)]
    if not items or bad or len(set(items)) != len(items):
        what = f"{bad[0]!r} is not a device" if bad else "empty or repeated"
        raise AutoMLError(f"--devices: {what} (allowed: a comma-separated list of distinct cuda:N or cpu, "
                          f"e.g. cuda:0,cuda:1)")
    return tuple(items)


def check_devices(cfg) -> tuple[str, ...]:
    """A RunConfig's --devices (parsed) and --gpus-per-job, checked against its executor and --device."""
    g = cfg.gpus_per_job
    if g is not None:
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 < g <= 1024:
            raise AutoMLError(f"--gpus-per-job: {g!r} (allowed: a number > 0, e.g. 1 or 0.5)")
        if cfg.executor != "ray":
            raise AutoMLError("--gpus-per-job: needs --executor ray (allowed: --devices cuda:0,... for local workers)")
        if cfg.device == "cpu":
            raise AutoMLError("--gpus-per-job: GPUs for jobs that train on --device cpu (allowed: --device auto or cuda)")
    if not cfg.devices:
        return ()
    devices = parse_devices(cfg.devices)
    if cfg.executor != "local":
        raise AutoMLError("--devices: spreads the local workers (allowed with --executor ray: --gpus-per-job)")
    if cfg.device not in ("auto", "cuda") and any(d != "cpu" for d in devices):
        raise AutoMLError(f"--devices: the workers' GPUs, but --device is {cfg.device} (allowed: --device auto or cuda)")
    return devices


def device_for(index: int, devices: tuple[str, ...]) -> str | None:
    """The device of local worker ``index`` (round-robin over ``devices``; None: no spreading)."""
    return devices[index % len(devices)] if devices else None


def worker_env(device: str | None) -> dict[str, str]:
    """The environment a worker on ``device`` starts with: only that GPU visible (none for cpu)."""
    if device is None:
        return {}
    match = DEVICE.match(device)
    return {VISIBLE: match.group(2) if match and match.group(2) is not None else ""}


def task_options(gpus_per_job: float | None) -> dict:
    """Ray's resource request for one seed-job task: one CPU, and ``num_gpus`` when asked for."""
    return {"num_cpus": 1, "max_retries": 0, **({"num_gpus": gpus_per_job} if gpus_per_job else {})}

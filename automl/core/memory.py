"""A job's peak memory (``peak_memory_mb``, seed 003's memory_usage): CUDA max allocated when the job used a
GPU, else the peak resident set size of the process.

The worker calls ``reset_peak`` before each job (Linux: writing 5 to /proc/self/clear_refs restarts the
VmHWM high-water mark; torch's CUDA peak statistics are reset), so a persistent worker reports each job's
own peak, not its lifetime's. Standard library only: torch is read from ``sys.modules`` when a job loaded it.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

MB = 2 ** 20


def _cuda():
    """torch.cuda when a job has initialised CUDA in this process, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_initialized() else None
    except Exception:  # a broken CUDA setup must not fail the job's result
        return None


def reset_peak() -> None:
    """Start a new peak for this process (before a job): the RSS high-water mark and torch's CUDA peaks."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux (or not permitted): the peak is the process's lifetime peak
    cuda = _cuda()
    if cuda is not None:
        for index in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(index)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB since the last reset_peak (VmHWM), else since it began."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB


def peak_cuda_mb() -> float | None:
    """The largest CUDA max-allocated over this process's GPUs in MiB since the last reset, None without CUDA use."""
    cuda = _cuda()
    if cuda is None:
        return None
    peak = max((cuda.max_memory_allocated(i) for i in range(cuda.device_count())), default=0)
    return peak / MB if peak > 0 else None


def peak_memory_mb() -> float:
    """The job's peak memory in MiB: CUDA max allocated when it used a GPU, else the process's peak RSS."""
    cuda = peak_cuda_mb()
    return round(cuda if cuda is not None else peak_rss_mb(), 2)

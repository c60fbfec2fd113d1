"""Jobs for tests/test_peak_memory.py (importable by spawned workers)."""
from __future__ import annotations

from automl.core import memory


def hold_mb(mb: int, channel=None) -> dict:
    """Touch `mb` MiB, free it, and return the peak the job's result would carry."""
    block = bytearray(mb * 2 ** 20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    del block
    return {"peak": memory.peak_memory_mb()}

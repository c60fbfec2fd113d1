"""Jobs for tests/test_devices.py (importable by spawned workers)."""
from __future__ import annotations

import os


def visible(channel=None) -> dict:
    """The GPUs this worker process may see, and what torch makes of them when it is loaded."""
    out = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}
    try:
        import torch

        out["count"] = torch.cuda.device_count()
    except ImportError:
        pass
    return out

"""Shared by the checkpoint tests of both trainers (tests/test_checkpoint.py, tests/test_torch_checkpoint.py)."""
from automl.exec.workers import LocalChannel

SKIP = {"wall_s", "train_s", "eval_s", "resumed_from", "checkpoint_note", "peak_memory_mb"}  # measurements


def plain(result) -> dict:
    """What must be equal between runs: everything but timing and checkpoint bookkeeping."""
    return {k: v for k, v in result.to_dict().items() if k not in SKIP}


class StopAfter(LocalChannel):
    """Stops the job after its n-th evaluation report, like a kill between two evaluations."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def report(self, payload) -> None:
        super().report(payload)
        if len(self.reports) >= self.n:
            self.stop("interrupted by the test")

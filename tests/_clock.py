"""A fake clock for deadline tests (issue 26: no test depends on the machine's speed)."""
import time

from automl.exec.workers import LocalChannel


class FakeClock:
    """time.time for the whole test process: the real clock until ``jump()``, then an hour later each time."""

    def __init__(self, monkeypatch):
        self.real, self.offset = time.time, 0.0
        monkeypatch.setattr(time, "time", lambda: self.real() + self.offset)

    def jump(self) -> None:
        self.offset += 3600.0


class JumpAtFirstReport(LocalChannel):
    """A channel that moves the clock an hour on at the job's first evaluation report (past any near deadline)."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock

    def report(self, payload) -> None:
        super().report(payload)
        if len(self.reports) == 1:
            self.clock.jump()

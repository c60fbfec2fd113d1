"""The real `automl run` driver (real local executor, real training) that freezes at a known point, so a
test can `kill -9` it there instead of racing a live run.

    python tests/_paused_driver.py MARKER N [automl run flags...]

The driver runs the command as `automl` would, with the executor the command names; once N jobs (other than
calibration) have ended and the driver has handled them (recorded, told, state written), the next wait
for results writes MARKER (JSON: the job ids that ended, and those still running or queued) and sleeps
forever. Whatever was submitted by then is in flight: the kill loses it.

A test calls ``kill_when_paused(run_dir_marker, after, flags)``: it starts this script in its own session,
waits for the marker (a generous ceiling, no timing assumption), kills the driver with SIGKILL and waits
until its workers are gone too (they die with it: parent-death signal).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.cli.main import build_parser, run_config_from  # noqa: E402
from automl.exec.executor import make_executor  # noqa: E402
from automl.exec.jobs import Done  # noqa: E402
from automl.run import driver  # noqa: E402
from automl.run.opening import prepare  # noqa: E402


class PausingExecutor:
    """The real executor, unchanged, except that its poll freezes after ``after`` jobs ended."""

    def __init__(self, inner, marker: Path, after: int):
        self.inner, self.marker, self.after = inner, marker, after
        self.ended: list[str] = []

    def poll(self, timeout=None):
        if len(self.ended) >= self.after:
            in_flight = [*self.inner.running(), *self.inner.pending()]
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ended": self.ended, "in_flight": in_flight}))
            tmp.replace(self.marker)
            while True:  # frozen until the test kills this process
                time.sleep(60)
        out = self.inner.poll(timeout)
        self.ended += [e.result.job_id for e in out
                       if isinstance(e, Done) and not e.result.job_id.startswith("calibrate")]
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def kill_when_paused(marker: Path, after: int, flags: list[str], ceiling_s: float = 300.0) -> dict:
    """Run the command until it pauses after ``after`` jobs, ``kill -9`` it there; the marker's contents."""
    proc = subprocess.Popen([sys.executable, __file__, str(marker), str(after), *flags], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    end = time.monotonic() + ceiling_s
    try:
        while not marker.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert marker.exists(), f"the driver never paused (exit {proc.poll()}): {_stderr(proc)}"
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _all_gone(workers, end), f"workers {sorted(workers)} outlived the killed driver"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return json.loads(marker.read_text())


def _stderr(proc) -> str:
    if proc.poll() is None:
        return "(still running)"
    return proc.stderr.read()[-2000:]


def _descendants(pid: int) -> set[int]:
    from _failures import descendants

    return descendants(pid)


def _all_gone(pids: set[int], end: float) -> bool:
    from _failures import alive

    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def main(argv: list[str]) -> int:
    marker, after, flags = Path(argv[0]), int(argv[1]), ["run", *argv[2:]]
    cfg = run_config_from(build_parser().parse_args(flags), flags)
    ctx = prepare(cfg, executor_factory=lambda n: PausingExecutor(make_executor(cfg.executor, n_jobs=n), marker,
                                                                  after))
    return driver.run(ctx)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

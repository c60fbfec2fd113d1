"""One live driver per run: ``<run_dir>/driver.lease`` says which host and process drives it, and when it
last said so (a daemon thread refreshes it every few seconds).

A second driver on the same run is refused with one line while the first is alive: on this host, while
its process exists; from another host, while its lease is fresh (younger than ``studies.GRACE_S``). A
killed driver's run resumes at once with the same command on this host, and after the grace period from
another host (its in-flight seeds resume from their checkpoints). With the default SQLite storage a
run cannot move between hosts while it is alive: SQLite is not safe on a shared filesystem.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from automl.core.errors import AutoMLError
from automl.search.studies import GRACE_S

REFRESH_S = 5.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """The run's driver lease: ``acquire()`` (or AutoMLError), then ``release()`` when the run ends."""

    def __init__(self, run_dir, storage: str | None):
        self.path = Path(run_dir) / "driver.lease"
        self.storage = storage
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict | None:
        """The lease as written by its holder (None: no lease, or one that cannot be read)."""
        try:
            got = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return got if isinstance(got, dict) and {"host", "pid", "beat"} <= set(got) else None

    def check(self) -> None:
        """AutoMLError when another driver is alive on this run."""
        other = self.holder()
        if other is None or (other["host"] == self.me["host"] and other["pid"] == self.me["pid"]):
            return
        age = time.time() - float(other["beat"])
        if other["host"] == self.me["host"]:
            if _alive(int(other["pid"])):
                raise AutoMLError(f"{self.path.parent}: another driver (pid {other['pid']} on this host) is running "
                                  "this run (allowed: one driver per run; a stopped or killed driver's run resumes "
                                  "with the same command)")
            return
        if age < GRACE_S:
            sqlite = not self.storage or self.storage.startswith("sqlite")
            hint = ("; SQLite cannot be shared between hosts: use --storage postgresql://... or journal:PATH"
                    if sqlite else "")
            raise AutoMLError(f"{self.path.parent}: a driver on host {other['host']} (pid {other['pid']}) is running "
                              f"this run, last heartbeat {age:.0f} s ago (allowed: one driver per run; it counts "
                              f"as dead after {GRACE_S} s without a heartbeat){hint}")

    def acquire(self) -> None:
        """Check, take the lease and keep it fresh until ``release``."""
        self.check()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        self._thread = threading.Thread(target=self._beat, name="automl-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        held = self.holder()
        if held and held["host"] == self.me["host"] and held["pid"] == self.me["pid"]:
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**self.me, "beat": time.time()}))
        os.replace(tmp, self.path)

    def _beat(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self._write()
            except OSError:
                pass  # a full or vanished disk: the run's own writes report it

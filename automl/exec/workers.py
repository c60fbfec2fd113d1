"""Worker side of the executor: what runs inside a worker process.

Backend-neutral pieces (`run_job`, `contains_nonfinite`, `resolve`) are what a
Ray backend would call inside its remote task; `worker_main` is the loop of a
persistent local worker process; the last few helpers are what the driver needs
to spawn workers safely (thread env, SIGTERM -> SystemExit). This module imports neither torch nor automl
modules at import time, so a spawned worker can set its thread environment
before anything pulls torch in.

Wire protocol on the worker's pipe (driver -> worker):
  ("job", seq, blob, stop_reason)  blob = pickle.dumps((fn, kwargs))
  ("stop", seq, reason)            cooperative stop for job `seq`
  ("exit",)                        leave the loop after the current job
worker -> driver:
  ("ready", pid) | ("report", seq, payload) | ("done", seq, state, value, reason, detail, wall_s, stop_reason)
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import math
import numbers
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

# Thread pools read these once, when the library loads: set before importing torch.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_PR_SET_PDEATHSIG = 1


class Channel:
    """A job's line to the driver: `report(payload)`, `stop_requested()`, `stop_reason()`."""

    def __init__(self, conn, seq: int, stop_reason: str | None = None):
        from automl.core.stop import Stop  # (standard library only: no torch before the thread env is set)

        self._conn = conn
        self._seq = seq
        self._stop_reason = Stop.of(stop_reason)
        self.exit_after = False  # the driver asked the worker to exit once this job ends

    def report(self, payload) -> None:
        """Send an intermediate value (e.g. the evaluation at step k) to the driver, in order."""
        self._conn.send(("report", self._seq, payload))

    def stop_requested(self) -> bool:
        """True once the driver asked this job to stop (pruned, deadline, shutdown): return soon."""
        self._drain()
        return self._stop_reason is not None

    def stop_reason(self):
        """The driver's stop request (an ``automl.core.stop.Stop``: its text and ``.reason``), or None."""
        self._drain()
        return self._stop_reason

    def _drain(self) -> None:
        """Read pending control messages; while a job runs only stop/exit can arrive."""
        from automl.core.stop import Stop, StopReason

        try:
            while self._conn.poll(0):
                msg = self._conn.recv()
                if msg[0] == "stop" and msg[1] == self._seq:
                    self._stop_reason = self._stop_reason or Stop.of(msg[2])
                elif msg[0] == "exit":
                    self.exit_after = True
                    self._stop_reason = self._stop_reason or Stop(StopReason.SHUTDOWN)
        except (EOFError, OSError):
            # the driver is gone: stop now; the worker loop exits afterwards
            self.exit_after = True
            self._stop_reason = self._stop_reason or Stop(StopReason.DRIVER_GONE)


class LocalChannel:
    """An in-process channel (tests, inline runs): keeps reports in a list; `stop()` asks to stop."""

    def __init__(self) -> None:
        self.reports: list = []
        self._stop_reason: str | None = None

    def report(self, payload) -> None:
        """Append an intermediate value to `self.reports`."""
        self.reports.append(payload)

    def stop(self, reason="stop") -> None:
        """Ask the job to stop, as the driver would (a Stop, a StopReason, or text ``Stop.of`` reads)."""
        from automl.core.stop import Stop

        self._stop_reason = Stop.of(reason)

    def stop_requested(self) -> bool:
        """True once `stop()` was called."""
        return self._stop_reason is not None

    def stop_reason(self):
        """The ``Stop`` given to `stop()`, or None."""
        return self._stop_reason


def resolve(fn):
    """Return the callable for `fn`: a callable as is, or a "package.module:qualname" string imported here."""
    if callable(fn):
        return fn
    if not isinstance(fn, str) or ":" not in fn:
        raise TypeError(f"job fn must be a callable or 'module:qualname', got {fn!r}")
    module_name, qualname = fn.split(":", 1)
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def find_nonfinite(obj, path: str = "result", _seen: set | None = None) -> tuple[str, float] | None:
    """(where, value) of the first NaN/inf float in `obj`, e.g. ("result['loss'][2]", nan), or None.

    Looks through real numbers (numpy scalars too), mappings, lists/tuples/sets,
    dataclasses and array-likes with `.tolist()` (numpy arrays, torch tensors).
    """
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return None if math.isfinite(value) else (path, value)
    if obj is None or isinstance(obj, (str, bytes)):
        return None
    seen = set() if _seen is None else _seen
    if id(obj) in seen:  # cycles
        return None
    seen.add(id(obj))
    items: Iterable[tuple[str, Any]]
    if isinstance(obj, Mapping):
        items = ((f"{path}[{k!r}]", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = ((f"{path}.{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif hasattr(obj, "tolist") and hasattr(obj, "shape"):
        items = [(path, obj.tolist())]
    else:
        return None
    for sub_path, value in items:
        found = find_nonfinite(value, sub_path, seen)
        if found:
            return found
    return None


def contains_nonfinite(obj) -> bool:
    """True if any float inside `obj` (recursively: dicts, lists, dataclasses, arrays) is NaN or inf."""
    return find_nonfinite(obj) is not None


def run_job(blob_or_call, channel) -> tuple[str, object, str, str, float]:
    """Run one job; never raises. Returns (state, value, reason, detail, wall_s).

    `blob_or_call` is pickled (fn, kwargs) bytes or the tuple itself. state is
    'complete' or 'failed' (exception, or NaN/inf anywhere in the returned value).
    """
    from automl.core.memory import reset_peak  # standard library only

    reset_peak()  # the job's peak_memory_mb is its own, not the worker's earlier jobs'
    start = time.perf_counter()
    try:
        fn, kwargs = pickle.loads(blob_or_call) if isinstance(blob_or_call, bytes) else blob_or_call
        value = resolve(fn)(**kwargs, channel=channel)
    except BaseException as exc:  # noqa: BLE001 - a job must never take its worker down
        wall = time.perf_counter() - start
        reason = f"exception: {type(exc).__name__}: {exc}".splitlines()[0]
        return "failed", None, reason, traceback.format_exc(), wall
    wall = time.perf_counter() - start
    found = find_nonfinite(value)
    if found is not None:
        where, bad = found
        kind = "nan" if math.isnan(bad) else "inf"
        return "failed", value, f"{kind} in result", f"{where} = {bad}", wall
    return "complete", value, "", "", wall


def die_with_parent(parent_pid: int) -> None:
    """Make this process die when `parent_pid` does, even on its kill -9.

    Linux: prctl(PR_SET_PDEATHSIG, SIGKILL). Everywhere: a watchdog thread that
    notices the re-parenting. The getppid() check closes the race where the
    parent died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _prepare_process(sys_path: list[str], preload: tuple[str, ...]) -> None:
    """One-time worker setup: the driver's sys.path, one thread per library, preloaded imports."""
    sys.path[:] = list(sys_path)
    for name in THREAD_ENV:
        os.environ[name] = "1"
    # Ctrl-C reaches the whole process group; the driver alone decides how to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in preload:
        importlib.import_module(module)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already fixed by an earlier parallel op; intra-op threads matter most


def worker_main(conn, parent_pid: int, sys_path: list[str], preload: tuple[str, ...]) -> None:
    """Entry point of a persistent worker process: set up once, then run jobs until told to exit."""
    die_with_parent(parent_pid)
    _prepare_process(sys_path, preload)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the driver closed the pipe or died
        if msg[0] == "exit":
            return
        if msg[0] != "job":
            continue  # a stop for a job that already finished
        _, seq, blob, stop_reason = msg
        channel = Channel(conn, seq, stop_reason)
        state, value, reason, detail, wall = run_job(blob, channel)
        if not _send_done(conn, seq, state, value, reason, detail, wall, channel.stop_reason()):
            return
        if channel.exit_after:
            return


def _send_done(conn, seq, state, value, reason, detail, wall, stop_reason) -> bool:
    """Send the result; an unpicklable value becomes a failed result. False if the driver is gone."""
    try:
        try:
            conn.send(("done", seq, state, value, reason, detail, wall, stop_reason))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            reason = f"exception: result not picklable: {type(exc).__name__}: {exc}".splitlines()[0]
            conn.send(("done", seq, "failed", None, reason, traceback.format_exc(), wall, stop_reason))
        return True
    except (EOFError, OSError):
        return False


# --- driver-side process helpers ------------------------------------------------
@contextlib.contextmanager
def single_thread_env(extra: Mapping[str, str] | None = None):
    """Set the thread env vars to 1 (and ``extra``, e.g. the worker's CUDA_VISIBLE_DEVICES) while a worker is
    spawned: the child inherits them from its first line."""
    env = {**{k: "1" for k in THREAD_ENV}, **(extra or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def main_not_imported():
    """While a worker is spawned, hide the caller's ``__main__`` script from multiprocessing, so the
    child does not re-run it: a user's script without an ``if __name__ == "__main__":`` guard then
    works. Only for executors whose job functions live in importable modules, never in ``__main__``."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None  # get_preparation_data reads both; None/absent: nothing to import
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def install_sigterm_exit():
    """Make SIGTERM raise SystemExit (so `with`/atexit shut workers down) if nobody handles it yet.

    Returns the handler to restore, or None when nothing was installed (not the
    main thread, or the application already handles SIGTERM).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    return signal.SIG_DFL


def restore_sigterm(old) -> None:
    """Undo `install_sigterm_exit` (given its return value)."""
    if old is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, old)

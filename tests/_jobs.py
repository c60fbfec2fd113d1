"""Job functions for tests/test_executor.py, importable by spawned workers (the driver's sys.path is passed on)."""
import os
import time


def add(a, b, channel):
    """Return a + b."""
    return a + b


def boom(channel):
    """Raise ZeroDivisionError."""
    return 1 / 0


def nan_result(channel):
    """Return a result with a NaN buried inside."""
    return {"seeds": [{"reward": 1.0}, {"reward": float("nan")}]}


def sleep_forever(channel):
    """Ignore stop requests and block (only a timeout or a kill ends it)."""
    channel.report(os.getpid())
    time.sleep(1000)


def count(n, channel):
    """Report 0..n-1 in order, return n."""
    for i in range(n):
        channel.report(i)
    return n


def until_stopped(channel, max_s=20.0):
    """Report once, then poll the channel until the driver asks to stop."""
    channel.report("started")
    start, polls = time.monotonic(), 1
    while not channel.stop_requested() and time.monotonic() - start < max_s:
        time.sleep(0.01)
        polls += 1
    return {"stop_reason": channel.stop_reason(), "waited_s": time.monotonic() - start, "polls": polls}


def thread_info(channel):
    """What a job sees: torch threads, OMP env, pid."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "pid": os.getpid()}


def matmul_iters(iters, channel, size=256):
    """A fixed amount of CPU-bound torch work (for throughput measurements)."""
    import torch

    torch.manual_seed(0)
    a = torch.randn(size, size)
    for _ in range(iters):
        a = torch.tanh(a @ a)
    return float(a.sum())


def unpicklable_result(channel):
    """Return something that cannot be sent back to the driver."""
    return lambda: 1


def start_child_process(channel):
    """Start a multiprocessing child, as SubprocVecEnv would (daemonic workers may not)."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    return child.exitcode


# --- scripted seed jobs for tests/test_scheduler.py -------------------------------------------
def _gate_open(gate_dir, name, channel, max_s=60.0):
    """Wait until `gate_dir/name` exists (True) or the driver asks to stop (False)."""
    start = time.monotonic()
    path = os.path.join(gate_dir, name)
    while not os.path.exists(path):
        if channel.stop_requested():
            return False
        if time.monotonic() - start > max_s:
            raise TimeoutError(f"gate {name} never opened")
        time.sleep(0.005)
    return not channel.stop_requested()


def _stopped_record(seed, k, channel):
    """What train_seed returns on a stop request: pruned, or stopped_at_deadline for a deadline."""
    why = str(channel.stop_reason())
    return {"seed": seed, "state": "stopped_at_deadline" if "deadline" in why.lower() else "pruned",
            "stop_reason": why, "episode_reward_mean": None, "steps": 100 * k, "evals_done": k}


def scripted_seed(seed, values, channel, gate_dir=None, fail_at=None, hang_at=None, nan_result=False,
                  extra=None):
    """A seed job that reports `values[k]` as evaluation k, like train_seed's channel does.

    With `gate_dir`, evaluation k is reported only once the file `<seed>.<k>` exists there and the
    job returns only once `<seed>.end` exists; a stop request while waiting ends the job as
    train_seed would (state pruned, or stopped_at_deadline when the reason names a deadline).
    `fail_at=k` raises instead of reporting evaluation k; `hang_at=k` ignores stop requests and
    blocks there (only a timeout or a kill ends it); `nan_result` returns a NaN reward; `extra`
    is merged into the returned record.
    """
    for k, value in enumerate(values):
        if gate_dir is not None and not _gate_open(gate_dir, f"{seed}.{k}", channel):
            return _stopped_record(seed, k, channel)
        if hang_at == k:
            time.sleep(1000)
        if fail_at == k:
            raise RuntimeError(f"seed {seed} diverged at evaluation {k}")
        channel.report({"eval_index": k, "steps": 100 * (k + 1), "value": value})
    if hang_at == len(values):
        time.sleep(1000)
    if gate_dir is not None and not _gate_open(gate_dir, f"{seed}.end", channel):
        return _stopped_record(seed, len(values), channel)
    return {"seed": seed, "state": "complete", "stop_reason": "step_budget",
            "episode_reward_mean": float("nan") if nan_result else float(values[-1]),
            "success_rate": 0.123456, "steps": 100 * len(values), "evals_done": len(values), **(extra or {})}


def scripted_batch(seeds, values, channel, gate_dir=None, fail_at=None, short=False, failed_seeds=()):
    """A batch job (all seeds of a config in one job, as the torch trainer runs them): reports
    `values[k]` (the mean over its live seeds) as evaluation k, returns one record per seed;
    gates as in scripted_seed, named `batch.<k>` and `batch.end`. `short` returns one record too few;
    `failed_seeds` come back failed (a seed that diverged alone), the others complete."""
    for k, value in enumerate(values):
        if gate_dir is not None and not _gate_open(gate_dir, f"batch.{k}", channel):
            return [_stopped_record(s, k, channel) for s in seeds]
        if fail_at == k:
            raise RuntimeError(f"batch diverged at evaluation {k}")
        channel.report({"eval_index": k, "steps": 100 * (k + 1), "value": value})
    if gate_dir is not None and not _gate_open(gate_dir, "batch.end", channel):
        return [_stopped_record(s, len(values), channel) for s in seeds]
    out = [{"seed": s, "state": "failed" if s in failed_seeds else "complete", "stop_reason": "step_budget",
            "episode_reward_mean": float(values[-1]) + s, "steps": 100 * len(values)} for s in seeds]
    return out[:-1] if short else out

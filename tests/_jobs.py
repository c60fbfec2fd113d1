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
    start = time.monotonic()
    while not channel.stop_requested() and time.monotonic() - start < max_s:
        time.sleep(0.01)
    return {"stop_reason": channel.stop_reason(), "waited_s": time.monotonic() - start}


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

"""peak_memory_mb (seed 003's memory_usage): every seed result carries the job's own peak (CUDA max allocated
on a GPU, else the worker's peak RSS), the state file keeps it, and --metrics / --constraint read it."""
from __future__ import annotations

import pytest

from automl.core import objectives
from automl.exec.executor import Done, Job, LocalProcessExecutor
from automl.run.configrun import seed_record
from automl.train.torch_train import train_seed_torch

CART = dict(num_envs=8, rollouts=32, mini_batches=2, learning_epochs=2, learning_rate=1e-3)


def _done(ex, n):
    out = []
    for _ in range(200):
        out += [e for e in ex.poll(timeout=1.0) if isinstance(e, Done)]
        if len(out) >= n:
            return out
    raise AssertionError("jobs did not finish")


def test_a_worker_reports_each_jobs_own_peak_not_its_lifetimes():
    with LocalProcessExecutor(1, preload=()) as ex:
        ex.submit(Job("big", "tests._memory_jobs:hold_mb", {"mb": 300}))
        big = _done(ex, 1)[0].result.value["peak"]
        ex.submit(Job("small", "tests._memory_jobs:hold_mb", {"mb": 1}))  # the same worker, after the big job
        small = _done(ex, 1)[0].result.value["peak"]
    assert big >= 300            # the 300 MiB block was resident at the peak
    assert small < big - 250     # reset before the job: the earlier job's peak is not reported again


def test_a_seed_result_and_its_state_file_entry_carry_peak_memory_mb():
    result = train_seed_torch(CART, env="cartpole", seed=0, total_steps=512, eval_every=256, eval_episodes=2,
                              device="cpu")
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 10   # a python + torch process
    assert seed_record(result.to_dict())["peak_memory_mb"] == result.peak_memory_mb


def test_metrics_and_constraints_read_peak_memory_mb():
    assert [o.name for o in objectives.parse_metrics("success_rate:max,peak_memory_mb:min")] == \
        ["success_rate", "peak_memory_mb"]
    c = objectives.parse_constraint("peak_memory_mb <= 500")
    seeds = [{"seed": 0, "peak_memory_mb": 400.0}, {"seed": 1, "peak_memory_mb": 700.0}]
    values = objectives.config_values(seeds, ["peak_memory_mb"], "mean", 1.0)
    assert values == {"peak_memory_mb": 550.0} and c.violation(values) == 50.0


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no GPU here: the CUDA peak is checked on a GPU")
def test_on_a_gpu_the_peak_is_cuda_max_allocated():
    import torch

    from automl.core import memory

    memory.reset_peak()
    x = torch.empty(64 * 2 ** 20, dtype=torch.uint8, device="cuda")   # 64 MiB
    del x
    assert 64 <= memory.peak_memory_mb() < 128

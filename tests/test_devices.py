"""--devices spreads the local workers over a machine's GPUs (each worker process sees only its own) and
--gpus-per-job is Ray's own GPU request per task (seed 000: "assign trials to specific GPUs"; seed 003:
resources_per_trial={'gpu': 1}). The request and the assignment are checked everywhere; what a GPU sees
where one exists."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from _cli import ROOT
from _servers import require

from automl.core.errors import AutoMLError
from automl.exec.devices import device_for, parse_devices, task_options, worker_env
from automl.exec.executor import Done, Job, LocalProcessExecutor
from automl.run.runconfig import RunConfig


def test_each_worker_index_gets_its_device_in_turn():
    devices = parse_devices("cuda:0,cuda:1")
    assert [device_for(i, devices) for i in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_env("cuda:1") == {"CUDA_VISIBLE_DEVICES": "1"} and worker_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
    assert device_for(3, ()) is None and worker_env(None) == {}


def test_local_workers_start_seeing_only_their_device():
    with LocalProcessExecutor(2, preload=(), devices=("cuda:0", "cuda:1")) as ex:
        assert sorted(ex.worker_devices().values()) == ["cuda:0", "cuda:1"]
        for i in range(4):
            ex.submit(Job(f"j{i}", "tests._device_jobs:visible", {}))
        done = []
        for _ in range(200):
            done += [e.result for e in ex.poll(timeout=1.0) if isinstance(e, Done)]
            if len(done) == 4:
                break
        where = ex.worker_devices()
    assert len(done) == 4
    for r in done:  # every job ran in a worker whose only visible GPU is the worker's device
        assert where[r.value["pid"]] == f"cuda:{r.value['visible']}"


def test_run_flags_for_devices_and_gpus_per_job():
    cfg = RunConfig(devices="cuda:0,cuda:1", n_jobs=4)
    assert cfg.devices == ("cuda:0", "cuda:1") and cfg.executor_options() == {"devices": ("cuda:0", "cuda:1")}
    assert RunConfig().executor_options() == {}
    for kwargs, words in [(dict(devices="gpu0"), "--devices: 'gpu0' is not a device"),
                          (dict(devices="cuda:0,cuda:0"), "--devices: empty or repeated"),
                          (dict(devices="cuda:0", device="cpu"), "--devices: the workers' GPUs, but --device is cpu"),
                          (dict(gpus_per_job=1), "--gpus-per-job: needs --executor ray"),
                          (dict(gpus_per_job=0, executor="ray"), "--gpus-per-job: 0"),
                          (dict(gpus_per_job=1, executor="ray", device="cpu"), "--gpus-per-job: GPUs for jobs that train on --device cpu")]:
        with pytest.raises(AutoMLError, match=words):
            RunConfig(**kwargs)


def test_a_ray_task_carries_its_gpu_request():
    require("ray")
    import ray

    assert task_options(None) == {"num_cpus": 1, "max_retries": 0}
    assert ray.remote(**task_options(0.5))(worker_env)._default_options["num_gpus"] == 0.5   # Ray's own request
    assert ray.remote(**task_options(None))(worker_env)._default_options.get("num_gpus") in (None, 0)
    cfg = RunConfig(executor="ray", gpus_per_job=1)
    assert cfg.executor_options() == {"address": None, "gpus_per_job": 1}   # what the run builds its executor with


_RAY_GPU = textwrap.dedent("""
    import json, time
    from automl.core.errors import AutoMLError
    from automl.exec.executor import Done, Job
    from automl.exec.ray_backend import RayExecutor
    try:
        ex = RayExecutor(1, gpus_per_job=1)
    except AutoMLError as exc:
        print(json.dumps({"refused": str(exc)})); raise SystemExit(0)
    ex.submit(Job("g", "_device_jobs:visible", {}))
    done = []
    while not done:
        done = [e.result for e in ex.poll(timeout=5) if isinstance(e, Done)]
    ex.shutdown()
    print(json.dumps({"value": done[0].value, "ok": done[0].ok}))
""")


def test_a_ray_job_asking_for_a_gpu_gets_one_or_is_refused_in_one_line():
    require("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _RAY_GPU], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    seen = json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith("{")))
    import torch

    if not torch.cuda.is_available():  # no GPU here: the request cannot be met, and says so
        assert seen["refused"] == ("--gpus-per-job: 1, but the Ray cluster has 0 GPU(s) (allowed: at most 0, "
                                   "or run where Ray sees GPUs)")
    else:  # Ray gave the task one GPU of its own
        assert seen["ok"] and seen["value"]["count"] == 1 and seen["value"]["visible"] not in (None, "")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no GPU here: what a worker's torch sees "
                    "is checked on a GPU machine")
def test_on_a_gpu_a_worker_on_cuda0_sees_one_gpu_and_a_worker_on_cpu_none():
    with LocalProcessExecutor(2, preload=("torch",), devices=("cuda:0", "cpu")) as ex:
        for i in range(4):
            ex.submit(Job(f"j{i}", "tests._device_jobs:visible", {}))
        done = []
        for _ in range(300):
            done += [e.result for e in ex.poll(timeout=1.0) if isinstance(e, Done)]
            if len(done) == 4:
                break
        where = ex.worker_devices()
    assert len(done) == 4
    assert all(r.value["count"] == (1 if where[r.value["pid"]] == "cuda:0" else 0) for r in done)

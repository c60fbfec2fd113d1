"""The scheduler tests' harness (tests/test_scheduler.py, tests/test_scheduler_pruning.py): the real
local executor behind a spy, gate files that let a test release each seed's evaluations, a clock
that ticks on each read, and the fixtures that make them.
"""
import time

import optuna
import pytest
from _sim import FakeClock

import _jobs
from automl.run.budget import Budget, Throughput
from automl.exec.executor import make_executor
from automl.run.scheduler import ConfigRun, Scheduler

WAIT_S = 30.0  # generous: workers share 2 cores with other processes


# --- harness --------------------------------------------------------------------------------
class Spy:
    """The real executor, with the scheduler's submit / request_stop / cancel calls recorded."""

    def __init__(self, inner):
        self.inner = inner
        self.submitted, self.stops, self.cancels = [], [], []

    def submit(self, job):
        self.submitted.append(job)
        self.inner.submit(job)

    def request_stop(self, job_id, reason="stop"):
        self.stops.append((job_id, reason))
        return self.inner.request_stop(job_id, reason)

    def cancel(self, job_id, reason="cancelled"):
        self.cancels.append(job_id)
        return self.inner.cancel(job_id, reason)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def ids(self):
        return [j.job_id for j in self.submitted]


class Gates:
    """Files the scripted jobs wait for: `<seed>.<k>` releases evaluation k, `<seed>.end` the return."""

    def __init__(self, path):
        self.dir = path
        path.mkdir()

    def open(self, *names):
        for name in names:
            (self.dir / name).touch()


class TickClock:
    """A clock that moves one second each time it is read."""

    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        self.t += 1.0
        return self.t


class Harness:
    """A Scheduler on a real executor whose callbacks are recorded.

    A config's train_params map each seed to scripted_seed's kwargs (or "batch" to scripted_batch's).
    """

    def __init__(self, executor, gates, *, n_jobs, budget=None, throughput=None, timeout_s=None,
                 batched=False):
        self.ex = executor
        self.seeds_done, self.configs_done, self.timeout_calls = [], [], []
        self.active_at_finish = []
        self.budget = budget or Budget(1.0, clock=FakeClock())
        self.throughput = throughput or Throughput(steps_per_s=1000.0, startup_s=0.0)

        def job_kwargs(cfg, seed):
            return {"seed": seed, "gate_dir": str(gates.dir), **cfg.train_params.get(seed, {})}

        def batch_kwargs(cfg, seeds):
            return {"seeds": list(seeds), "gate_dir": str(gates.dir), **cfg.train_params["batch"]}

        def on_seed(cfg, seed, record):
            self.seeds_done.append((cfg.config_id, seed, record))

        def on_config(cfg):
            self.configs_done.append(cfg.config_id)
            self.active_at_finish.append(cfg in self.sched.active)

        def timeout(steps):
            self.timeout_calls.append(steps)
            return timeout_s(steps) if timeout_s else 60.0

        self.sched = Scheduler(executor, self.budget, self.throughput, n_jobs=n_jobs,
                               job_fn=_jobs.scripted_seed, job_kwargs=job_kwargs,
                               on_seed=on_seed, on_config=on_config, timeout_s=timeout,
                               batch_fn=_jobs.scripted_batch if batched else None,
                               batch_kwargs=batch_kwargs if batched else None)

    def pump(self, until, what):
        """Step the scheduler until `until()` holds (no assumption on how long that takes)."""
        end = time.monotonic() + WAIT_S
        while not until():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.sched.step(0.05)

    def records(self, config_id):
        return {seed: rec for cid, seed, rec in self.seeds_done if cid == config_id}


@pytest.fixture
def executors():
    made = []

    def make(n_jobs):
        made.append(Spy(make_executor("local", n_jobs=n_jobs, preload=())))
        return made[-1]

    yield make
    for spy in made:
        spy.inner.shutdown(grace_s=0.5)


@pytest.fixture
def gates(tmp_path):
    return Gates(tmp_path / "gates")


def new_config(study, config_id, scripts, *, kind="hp", steps=300, results=None, seeds=None):
    return ConfigRun(trial=study.ask(), config_id=config_id, kind=kind, cycle=0, params={}, weights={},
                     seeds=list(seeds if seeds is not None else scripts), train_params=scripts, steps=steps,
                     results=dict(results or {}))


def intermediate(cfg):
    """What the pruner was told: the trial's intermediate values, read back from the storage."""
    return next(t for t in cfg.trial.study.get_trials() if t.number == cfg.trial.number).intermediate_values


def memory_study(pruner):
    return optuna.create_study(direction="maximize", pruner=pruner)

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
from automl.run.configrun import ConfigEnded, ConfigRun, SeedEnded, SeedJobs
from automl.run.scheduler import Scheduler

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
    """A Scheduler on a real executor whose events are recorded as they are handed back.

    A config's train_params map each seed to scripted_seed's kwargs (or "batch" to scripted_batch's).
    """

    def __init__(self, executor, gates, *, n_jobs, budget=None, throughput=None, timeout_s=60.0,
                 batched=False):
        self.ex, self.gates, self.batched = executor, gates, batched
        self.seeds_done, self.configs_done, self.events = [], [], []
        self.budget = budget or Budget(1.0, clock=FakeClock())
        self.throughput = throughput or Throughput(steps_per_s=1000.0, startup_s=0.0)
        self.sched = Scheduler(executor, self.budget, self.throughput, n_jobs=n_jobs, timeout_s=timeout_s)

    def jobs(self, cfg):
        """What the scripted jobs of ``cfg`` need (their kwargs carry no deadline: they keep their own)."""
        gate = {"gate_dir": str(self.gates.dir)}
        if self.batched:
            return SeedJobs(fn=_jobs.scripted_seed, seed_kwargs={}, batch_fn=_jobs.scripted_batch,
                            batch_kwargs={**gate, **cfg.train_params["batch"]}, own_deadline=True)
        return SeedJobs(fn=_jobs.scripted_seed, own_deadline=True,
                        seed_kwargs={s: {"seed": s, **gate, **cfg.train_params.get(s, {})} for s in cfg.pending})

    def handle(self, events):
        self.events += events
        for ev in events:
            if isinstance(ev, SeedEnded):
                self.seeds_done.append((ev.config.config_id, ev.seed, ev.record))
            elif isinstance(ev, ConfigEnded):
                assert ev.config not in self.sched.active  # an ended config is no longer active
                self.configs_done.append(ev.config.config_id)
        return events

    def add(self, cfg):
        return self.handle(self.sched.add(cfg, self.jobs(cfg)))

    def step(self, timeout):
        return self.handle(self.sched.step(timeout))

    def drain(self, *, hard_deadline, grace_s=10.0, on_seed=None):
        """The scheduler's drain; ``on_seed()`` is called as each seed's end is handed back."""
        def handle(events):
            if on_seed is not None and any(isinstance(ev, SeedEnded) for ev in events):
                on_seed()
            self.handle(events)
        self.sched.drain(hard_deadline=hard_deadline, grace_s=grace_s, handle=handle)

    def prune(self, cfg, reason):
        return self.handle(self.sched.prune(cfg, reason))

    def pump(self, until, what):
        """Step the scheduler until `until()` holds (no assumption on how long that takes)."""
        end = time.monotonic() + WAIT_S
        while not until():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.step(0.05)

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

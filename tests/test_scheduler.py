"""Pins automl/run/scheduler.py: pruning over seeds, admission, submission order, failures, stop/drain, batches.

Real parts: the local process executor (workers run the scripted jobs of tests/_jobs.py, which
report through the channel as train_seed does), real Optuna studies and pruners. Seed jobs wait
on gate files (tests/_jobs.py:scripted_seed) so the test decides which seed reaches which
evaluation when: every ordering asserted here is forced, never left to machine speed. Clocks that
decide deadlines are fake (tests/_sim.py:FakeClock, or a clock that ticks on each read).
"""

import optuna
import pytest
from _sim import FakeClock

import _jobs
from automl.run.budget import Budget, Throughput
from automl.run.configrun import config_state
from automl.run.configrun import seed_record
from automl.run.scheduler import Scheduler
from automl.search.strategies import make_pruner
from _scheduler_harness import TickClock, Harness, executors, gates, new_config, intermediate, memory_study  # noqa: F401 - fixtures


# --- pure pieces ----------------------------------------------------------------------------
def test_seed_record_keeps_the_state_file_fields_rounded():
    raw = {"seed": 3, "state": "complete", "episode_reward_mean": 1.234567, "success_rate": 0.5,
           "shaped_return": None, "reference_return": 2.00004, "terms": {"a": 0.123456, "b": "x", "c": 2},
           "steps": 1000, "wall_s": 12.3456, "stop_reason": "step_budget", "resumed_from": 500,
           "evals": [[500, 1.0000049]], "train_s": 3.0, "params": 4610}
    assert seed_record(raw) == {
        "seed": 3, "state": "complete", "episode_reward_mean": 1.2346, "success_rate": 0.5,
        "reference_return": 2.0, "terms": {"a": 0.1235, "c": 2.0}, "steps": 1000, "wall_s": 12.35,
        "params": 4610, "evals": [[500, 1.0]], "stop_reason": "step_budget", "resumed_from": 500,
        "train_s": 3.0}  # (training time is kept: the ladder's cost model reads a climb's own time from it)


def test_fits_counts_waves_of_seed_jobs_or_one_batch_against_the_phase_deadline():
    clock = FakeClock()
    budget = Budget(1.0, clock=clock)
    budget.set_reserve(100.0)
    clock.t = budget.tuning_deadline - 6.0      # 6 s of tuning left, 106 s to the hard deadline
    tp = Throughput(steps_per_s=1000.0, startup_s=2.0)   # one 1000-step job: (2 + 1) * 1.15 = 3.45 s

    def sched(n_jobs):
        return Scheduler(None, budget, tp, n_jobs=n_jobs)

    two, one = sched(2), sched(1)
    assert two.fits(1000, 2)                        # one wave: 3.45 s
    assert not two.fits(1000, 3)                    # two waves: 6.9 s
    assert two.fits(1000, 3, batched=True)          # one job of 3000 seed-steps: (2 + 3) * 1.15 = 5.75 s
    assert not two.fits(1000, 4, batched=True)      # (2 + 4) * 1.15 = 6.9 s
    assert two.fits(1000, 3, heldout=True)          # held-out configs may use the reserve
    assert one.fits(1000, 1) and not one.fits(1000, 2)
    clock.t = budget.tuning_deadline - 3.0
    assert not two.fits(1000, 1) and two.fits(1000, 1, heldout=True)
    assert not two.fits(1000, 1, batched=True)
    clock.t = budget.deadline - 3.0
    assert not two.fits(1000, 1, heldout=True)


def test_a_jobs_timeout_and_deadline_come_from_the_scheduler_at_submission():
    """No call back up: the limit is the config's own estimate, else --timeout-per-trial, else 4x the
    measured estimate + 2 min (a batch: all its seed-steps); tuning jobs train to the tuning deadline,
    re-checks to the hard deadline."""
    clock = FakeClock()
    budget = Budget(1.0, clock=clock)
    budget.set_reserve(100.0)
    tp = Throughput(steps_per_s=1000.0, startup_s=2.0)
    study = memory_study(make_pruner("none"))
    cfg = new_config(study, "c", {0: {}}, steps=1000)
    est = Scheduler(None, budget, tp, n_jobs=2)
    assert est.job_timeout(cfg) == 4 * tp.seconds_for(1000) + 120.0
    assert est.job_timeout(cfg, 3) == 4 * tp.seconds_for(3000) + 120.0
    assert Scheduler(None, budget, tp, n_jobs=2, timeout_s=7.0).job_timeout(cfg, 3) == 7.0
    cfg.timeout_s = 5.0
    assert Scheduler(None, budget, tp, n_jobs=2, timeout_s=7.0).job_timeout(cfg, 3) == 15.0
    assert est.phase_deadline(cfg) == budget.tuning_deadline < budget.deadline
    for kind in ("heldout", "test"):
        assert est.phase_deadline(new_config(study, "r", {0: {}}, kind=kind)) == budget.deadline


# --- submission, admission, resume ----------------------------------------------------------
def test_seeds_are_submitted_in_config_then_seed_order_as_workers_free_up(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    a = new_config(study, "A", {s: {"values": [1.0]} for s in (10, 11, 12)})
    b = new_config(study, "B", {s: {"values": [2.0]} for s in (20, 21)}, steps=500)
    b.batched = True  # the scheduler decides: no batch function, so one job per seed
    gates.open(*(f"{s}.0" for s in (10, 11, 12, 20, 21)))
    h.add(a)
    h.add(b)
    assert not b.batched and h.sched.free_slots() == 2 - 0 - 5 and ex.ids == []
    h.step(0)
    assert ex.ids == ["A:hp:10", "A:hp:11"] and h.sched.running_jobs() == 2
    assert h.sched.free_slots() == 2 - 2 - 3
    first = ex.submitted[0]
    assert first.tag == ("A", 10) and first.timeout_s == 60.0
    assert first.kwargs == {"seed": 10, "gate_dir": str(gates.dir), "values": [1.0]}

    gates.open("11.end")                             # the second worker frees first
    h.pump(lambda: len(ex.ids) == 3, "a third submission")
    assert ex.ids[2] == "A:hp:12"                    # A's last seed before any of B's
    gates.open("10.end")
    h.pump(lambda: len(ex.ids) == 4, "a fourth submission")
    assert ex.ids[3] == "B:hp:20"
    gates.open("12.end")
    h.pump(lambda: len(ex.ids) == 5, "a fifth submission")
    assert ex.ids[4] == "B:hp:21" and h.configs_done == ["A"]
    gates.open("20.end", "21.end")
    h.pump(lambda: len(h.configs_done) == 2, "both configs")
    assert h.configs_done == ["A", "B"]
    assert [(c, s) for c, s, _ in h.seeds_done][:3] == [("A", 11), ("A", 10), ("A", 12)]
    assert [j.timeout_s for j in ex.submitted] == [60.0] * 5   # the scheduler's fixed limit (--timeout-per-trial)
    assert h.sched.free_slots() == 2 and h.sched.running_jobs() == 0 and h.sched.active == []


@pytest.mark.parametrize("curve, told", [([[100, 5.0]], 3.0), (None, 2.0)])
def test_a_resumed_config_runs_only_its_missing_seeds_and_is_still_pruned(executors, gates, curve, told):
    """A seed finished before the resume reports no more: its recorded curve stands in for its reports
    (evaluation 0: mean(1, 5, 3) = 3.0); without a curve the pruner goes on with the two seeds that report
    (mean(1, 3) = 2.0). Either way the pruner is asked at evaluation 0, and this one prunes any value."""
    study = memory_study(optuna.pruners.ThresholdPruner(lower=100.0))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    done = {"seed": 1, "state": "complete", "episode_reward_mean": 5.0, "steps": 100,
            **({"evals": curve} if curve else {})}
    cfg = new_config(study, "r", {0: {"values": [1.0]}, 2: {"values": [3.0]}}, seeds=[0, 1, 2],
                     results={1: done})
    assert cfg.pending == [0, 2]
    whole = new_config(study, "whole", {}, seeds=[0, 1], results={0: done, 1: done})
    h.add(whole)                               # nothing left to run: finished on add
    assert h.configs_done == ["whole"] and h.sched.active == []
    h.add(cfg)
    gates.open("0.0", "2.0")                         # both report evaluation 0, neither may end yet
    h.pump(lambda: len(h.configs_done) == 2, "the resumed config")
    assert ex.ids == ["r:hp:0", "r:hp:2"]
    assert intermediate(cfg) == {0: told} and cfg.pruned and config_state(cfg) == "pruned"
    assert ex.stops == [("r:hp:0", "pruned at evaluation 0"), ("r:hp:2", "pruned at evaluation 0")]
    assert sorted(h.records("r")) == [0, 2] and cfg.results[1] is done
    assert {s: r["state"] for s, r in h.records("r").items()} == {0: "pruned", 2: "pruned"}


# --- failures, timeouts, throughput ---------------------------------------------------------
def test_timeouts_exceptions_and_nan_results_become_failed_seeds_and_only_clean_runs_are_measured(
        executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(2)
    tp = Throughput(steps_per_s=1000.0, startup_s=0.0)
    h = Harness(ex, gates, n_jobs=2, throughput=tp, timeout_s=60.0)
    hung = new_config(study, "t", {0: {"values": [1.0], "hang_at": 0}}, steps=1)
    hung.timeout_s = 1.0  # its caller's own estimate comes before the scheduler's limit
    mixed = new_config(study, "m", {1: {"values": [1.0], "nan_result": True}, 2: {"values": [2.0]},
                                    3: {"values": [3.0], "extra": {"resumed_from": 100}}})
    gates.open("0.0", "1.0", "1.end", "2.0", "2.end", "3.0", "3.end")
    h.add(hung)
    h.add(mixed)
    h.pump(lambda: len(h.configs_done) == 2, "both configs")
    assert [j.timeout_s for j in ex.submitted] == [1.0, 60.0, 60.0, 60.0]
    t0 = h.records("t")[0]
    assert t0.pop("wall_s") >= 1.0
    assert t0 == {"seed": 0, "state": "failed", "reason": "timeout after 1s"}
    recs = h.records("m")
    assert recs[1].pop("wall_s") >= 0
    assert recs[1] == {"seed": 1, "state": "failed", "reason": "nan in result"}
    base = {"state": "complete", "stop_reason": "step_budget", "success_rate": 0.1235, "steps": 100}
    assert recs[2] == {"seed": 2, "episode_reward_mean": 2.0, **base}
    assert recs[3] == {"seed": 3, "episode_reward_mean": 3.0, "resumed_from": 100, **base}
    assert config_state(hung) == "failed" and config_state(mixed) == "complete"
    assert len(tp.samples) == 1                      # seed 2 only: not failed, not resumed
    assert h.sched.busy_s >= 1.0                     # every job's wall time, the timed-out one included


# --- stop_all and drain ---------------------------------------------------------------------
def test_stop_all_stops_running_seeds_drops_queued_ones_and_drain_waits_without_killing(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    a = new_config(study, "A", {s: {"values": [1.0]} for s in (0, 1, 2)})
    b = new_config(study, "B", {5: {"values": [1.0]}})
    h.add(a)
    h.add(b)
    h.step(0)
    assert ex.ids == ["A:hp:0", "A:hp:1"] and h.sched.free_slots() == 2 - 2 - 2
    h.sched.stop_all("deadline")
    assert a.pending == [] and b.pending == [] and h.sched.free_slots() == 0
    assert ex.stops == [("A:hp:0", "deadline"), ("A:hp:1", "deadline")]
    h.drain(hard_deadline=h.budget.clock() + 100.0)   # fake clock: the grace never runs out
    assert h.sched.jobs == {} and ex.cancels == [] and ex.ids == ["A:hp:0", "A:hp:1"]
    stopped = {"state": "stopped_at_deadline", "stop_reason": "deadline", "steps": 0}
    assert h.records("A") == {0: {"seed": 0, **stopped}, 1: {"seed": 1, **stopped}}
    assert not a.pruned and config_state(a) == "stopped_at_deadline"
    # a config whose seeds were all queued is emptied by stop_all and ended by the drain, as A is:
    # on_config once, nothing recorded for its seeds, stopped at the deadline
    assert h.configs_done == ["A", "B"] and h.sched.active == [] and h.records("B") == {}
    assert config_state(b) == "stopped_at_deadline" and not b.pruned


def test_stop_all_alone_leaves_queued_configs_to_a_resume(executors, gates):
    """An interrupt calls stop_all without a drain: a config none of whose seeds ran stays in `active`,
    unfinished, so the state file keeps it in flight and a resume trains its seeds."""
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1)
    a = new_config(study, "A", {0: {"values": [1.0]}})
    b = new_config(study, "B", {5: {"values": [1.0]}})
    h.add(a)
    h.add(b)
    h.step(0)
    h.sched.stop_all("interrupted")
    assert ex.ids == ["A:hp:0"] and ex.stops == [("A:hp:0", "interrupted")]
    assert h.sched.active == [a, b] and b.finished and h.configs_done == []


def test_drain_before_the_deadline_still_runs_queued_seeds(executors, gates):
    # (the driver drains at the tuning deadline without stop_all: the job's own deadline ends them)
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1)
    cfg = new_config(study, "d", {0: {"values": [1.0]}, 1: {"values": [2.0]}})
    gates.open("0.0", "0.end", "1.0", "1.end")
    h.add(cfg)
    h.step(0)
    h.drain(hard_deadline=h.budget.clock() + 100.0)
    assert ex.ids == ["d:hp:0", "d:hp:1"] and ex.cancels == [] and h.sched.jobs == {}
    assert [h.records("d")[s]["state"] for s in (0, 1)] == ["complete", "complete"]
    assert h.configs_done == ["d"]


def test_drain_kills_what_still_runs_once_the_hard_deadline_plus_grace_passed(executors, gates):
    clock = TickClock()
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1, budget=Budget(1.0, clock=clock))
    seen = []
    cfg = new_config(study, "k", {0: {"values": [1.0], "hang_at": 0}})   # ignores stop requests
    gates.open("0.0")
    h.add(cfg)
    h.pump(lambda: "k:hp:0" in ex.inner.running(), "the job on a worker")
    hard = clock.t + 2.0
    h.drain(hard_deadline=hard, grace_s=2.0, on_seed=lambda: seen.append(clock.t))
    assert ex.cancels == ["k:hp:0"] and ex.stops == [] and h.sched.jobs == {}
    assert len(seen) == 1 and seen[0] > hard + 2.0    # not killed before the grace ran out
    rec = h.records("k")[0]
    assert rec.pop("wall_s") >= 0
    assert rec == {"seed": 0, "state": "stopped_at_deadline", "reason": "cancelled"}
    assert h.configs_done == ["k"] and config_state(cfg) == "stopped_at_deadline"


def test_drain_past_the_hard_deadline_leaves_nothing_running(executors, gates):
    clock = TickClock()
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1, budget=Budget(1.0, clock=clock))
    cfg = new_config(study, "x", {s: {"values": [1.0], "hang_at": 0} for s in (0, 1)})
    gates.open("0.0", "1.0")
    h.add(cfg)
    h.pump(lambda: "x:hp:0" in ex.inner.running(), "the job on a worker")
    h.drain(hard_deadline=clock.t + 1.0, grace_s=1.0)
    assert ex.cancels == ["x:hp:0"]
    assert h.sched.jobs == {} and ex.ids == ["x:hp:0"]


# --- batched configs ------------------------------------------------------------------------
def test_a_batched_config_is_one_job_whose_mean_is_each_seeds_report_and_is_pruned_as_one(executors, gates):
    study = memory_study(optuna.pruners.ThresholdPruner(lower=0.0))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2, batched=True, timeout_s=None)
    cfg = new_config(study, "b", {"batch": {"values": [2.0, -1.0, 5.0]}}, seeds=[3, 4, 5])
    h.add(cfg)
    assert cfg.batched and h.sched.free_slots() == 2 - 0 - 1     # a queued batch counts as one job
    h.step(0)
    assert ex.ids == ["b:hp:batch"] and h.sched.free_slots() == 2 - 1 - 0
    job = ex.submitted[0]
    assert job.tag == ("b", (3, 4, 5)) and job.fn is _jobs.scripted_batch
    assert job.kwargs == {"seeds": [3, 4, 5], "gate_dir": str(gates.dir), "values": [2.0, -1.0, 5.0]}
    assert job.timeout_s == 4 * h.throughput.seconds_for(900) + 120.0   # its estimate: steps * seeds

    gates.open("batch.0")
    h.pump(lambda: 0 in cfg.reported, "evaluation 0")
    assert cfg.reports == {0: {3: 2.0, 4: 2.0, 5: 2.0}} and intermediate(cfg) == {0: 2.0}
    gates.open("batch.1")                            # -1.0 < 0.0: pruned
    h.pump(lambda: cfg.finished, "the pruned batch")
    assert intermediate(cfg) == {0: 2.0, 1: -1.0}
    assert ex.stops == [("b:hp:batch", "pruned at evaluation 1")]
    stopped = {"state": "pruned", "stop_reason": "pruned at evaluation 1", "steps": 200}
    assert [(s, r) for _, s, r in h.seeds_done] == [(s, {"seed": s, **stopped}) for s in (3, 4, 5)]
    assert h.configs_done == ["b"] and config_state(cfg) == "pruned"


def test_a_batched_job_gives_one_record_per_seed_and_a_failed_batch_fails_each_seed(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(2)
    tp = Throughput(steps_per_s=1000.0, startup_s=0.0)
    h = Harness(ex, gates, n_jobs=2, batched=True, throughput=tp)
    ok = new_config(study, "ok", {"batch": {"values": [1.0]}}, seeds=[0, 1])
    bad = new_config(study, "bad", {"batch": {"values": [1.0, 2.0], "fail_at": 1}}, seeds=[0, 1])
    short = new_config(study, "short", {"batch": {"values": [1.0], "short": True}}, seeds=[0, 1])
    part = new_config(study, "part", {"batch": {"values": [1.0], "failed_seeds": [1]}}, seeds=[0, 1])
    gates.open("batch.0", "batch.1", "batch.end")
    for c in (ok, bad, short, part):
        h.add(c)
    assert h.sched.free_slots() == 2 - 0 - 4
    h.pump(lambda: len(h.configs_done) == 4, "four batches")
    assert ex.ids == ["ok:hp:batch", "bad:hp:batch", "short:hp:batch", "part:hp:batch"]
    done = {"state": "complete", "stop_reason": "step_budget", "steps": 100}
    assert h.records("ok") == {0: {"seed": 0, "episode_reward_mean": 1.0, **done},
                               1: {"seed": 1, "episode_reward_mean": 2.0, **done}}
    for s, rec in h.records("bad").items():
        assert rec.pop("wall_s") >= 0
        assert rec == {"seed": s, "state": "failed", "reason": "exception: RuntimeError: batch diverged at evaluation 1"}
    assert intermediate(bad) == {0: 1.0}             # reported before it failed
    assert [r["state"] for r in h.records("short").values()] == ["failed", "failed"]
    assert [h.records("part")[s]["state"] for s in (0, 1)] == ["complete", "failed"]
    assert [config_state(c) for c in (ok, bad, short, part)] == ["complete", "failed", "failed", "complete"]
    # throughput is measured on batches whose every seed completed: "ok" once, for its 200 seed-steps
    assert len(tp.samples) == 1


def test_a_resumed_batched_config_with_every_seed_recorded_gets_its_jobs_and_ends_at_once(tmp_path):
    """A killed run's config whose seeds were all recorded (its end not yet written) has no queued seed; its
    batch job's arguments are still built (from its seeds), and the scheduler ends it when it takes it."""
    from types import SimpleNamespace

    from automl.run.configrun import ConfigEnded, ConfigRun
    from automl.run.jobs import JobSpecs

    cfg = SimpleNamespace(device="cpu", checkpoint_every=4096)
    inputs = SimpleNamespace(env="cartpole", rollout=256)
    plan = SimpleNamespace(eval_every=512, eval_episodes=4, train_steps_per_s=1000.0, steps_per_s=1000.0)
    specs = JobSpecs(cfg, inputs, tmp_path, plan, fn=print, batch_fn=print)
    c = ConfigRun(trial=None, config_id="config_003", kind="tuning", cycle=1, params={}, weights={}, seeds=[0, 1],
                  train_params={}, steps=2048, results={0: {"score": 1.0}, 1: {"score": 2.0}})
    assert c.pending == [] and c.finished
    jobs = specs.of(c)
    assert jobs.batched and jobs.batch_kwargs["checkpoint_path"].endswith("config_003/tuning_seeds.pt")
    assert "seed" not in jobs.batch_kwargs and jobs.batch_kwargs["checkpoint_every"] == 4096
    sched = Scheduler(None, Budget(3600, clock=FakeClock()), Throughput(1000.0), n_jobs=2)  # nothing to submit
    assert [type(e) for e in sched.add(c, jobs)] == [ConfigEnded] and sched.active == []

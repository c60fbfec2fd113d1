"""Pins pruning over seeds in automl/run/scheduler.py: a step is reported once every live seed
reached it, failed seeds and non-finite values are left out, a prune stops running seeds and drops
queued ones, held-out configs are never pruned. Harness and method: tests/_scheduler_harness.py.
"""
import math

import optuna

from automl.run.configrun import config_state
from automl.search.strategies import make_pruner
from automl.search import studies
from _scheduler_harness import Harness, executors, gates, new_config, intermediate, memory_study  # noqa: F401 - fixtures


# --- pruning across seeds -------------------------------------------------------------------
def test_pruner_is_told_the_mean_over_seeds_only_once_every_seed_reached_the_step(executors, gates, tmp_path):
    # The record study as RunContext.start opens it: SQLite, --pruner median.
    url = studies.storage_url(tmp_path / "run", None)
    (tmp_path / "run").mkdir()
    study = studies.open_study(url, studies.RECORD, pruner=make_pruner("median", min_resource=1,
                                                                         reduction_factor=3))
    for _ in range(5):  # MedianPruner needs 5 finished trials: their median is 1.0 at step 1, 5.0 at step 2
        study.add_trial(optuna.trial.create_trial(value=5.0, intermediate_values={0: 0.0, 1: 1.0, 2: 5.0}))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    # Optuna's median rule compares the best value so far with the others' median at that step:
    # seed 0 alone would be pruned at evaluation 1 (best 0.5 < 1.0); the mean over both (1.5) is not
    cfg = new_config(study, "c", {0: {"values": [0.5, 0.0, 0.0]}, 1: {"values": [0.5, 3.0, 0.0]}})
    h.add(cfg)
    h.step(0)
    assert ex.ids == ["c:hp:0", "c:hp:1"]

    gates.open("0.0", "0.1", "0.2")                  # seed 0 runs three evaluations ahead
    h.pump(lambda: 0 in cfg.reports.get(2, {}), "seed 0's evaluation 2")
    assert cfg.reports == {0: {0: 0.5}, 1: {0: 0.0}, 2: {0: 0.0}}
    assert intermediate(cfg) == {} and cfg.reported == set() and not cfg.pruned

    gates.open("1.0")
    h.pump(lambda: 0 in cfg.reported, "evaluation 0 reported")
    assert intermediate(cfg) == {0: 0.5} and not cfg.pruned   # step 0: warm-up (min_resource 1)
    gates.open("1.1")
    h.pump(lambda: 1 in cfg.reported, "evaluation 1 reported")
    assert intermediate(cfg) == {0: 0.5, 1: 1.5} and not cfg.pruned
    assert ex.stops == []

    gates.open("1.2")                                # best so far 1.5 < median 5.0 at evaluation 2
    h.pump(lambda: cfg.pruned, "the prune")
    assert intermediate(cfg) == {0: 0.5, 1: 1.5, 2: 0.0}
    assert ex.stops == [("c:hp:0", "pruned at evaluation 2"), ("c:hp:1", "pruned at evaluation 2")]
    h.pump(lambda: cfg.finished and not h.sched.jobs, "the stopped seeds")
    h.step(0.05)  # nothing more happens: callbacks fired once

    stopped = {"state": "pruned", "stop_reason": "pruned at evaluation 2", "steps": 300}
    assert h.records("c") == {0: {"seed": 0, **stopped}, 1: {"seed": 1, **stopped}}
    assert sorted(s for _, s, _ in h.seeds_done) == [0, 1]
    assert h.configs_done == ["c"]
    assert config_state(cfg) == "pruned"
    # the scheduler reports and asks the pruner; telling the study how the config ended is on_config's job
    assert study.get_trials()[-1].state == optuna.trial.TrialState.RUNNING


def test_a_failing_seed_is_dropped_from_the_mean_and_releases_the_step_it_held_back(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(3)
    h = Harness(ex, gates, n_jobs=3)
    cfg = new_config(study, "f", {0: {"values": [2.0, 4.0]}, 1: {"values": [4.0, 8.0]},
                                  2: {"values": [6.0, 100.0], "fail_at": 1}})
    h.add(cfg)
    gates.open("0.0", "1.0", "2.0")
    h.pump(lambda: 0 in cfg.reported, "evaluation 0")
    assert intermediate(cfg) == {0: 4.0}             # (2 + 4 + 6) / 3
    gates.open("0.1", "1.1")
    h.pump(lambda: set(cfg.reports.get(1, {})) == {0, 1}, "seeds 0 and 1 at evaluation 1")
    assert intermediate(cfg) == {0: 4.0}             # seed 2 is live and has not reached evaluation 1

    gates.open("2.1")                                # seed 2 raises instead of reporting
    h.pump(lambda: 1 in cfg.reported, "evaluation 1 after the failure")
    assert intermediate(cfg) == {0: 4.0, 1: 6.0}     # (4 + 8) / 2: the failed seed is left out
    failed = h.records("f")[2]
    assert failed.pop("wall_s") >= 0
    assert failed == {"seed": 2, "state": "failed", "reason": "exception: RuntimeError: seed 2 diverged at evaluation 1"}

    gates.open("0.end", "1.end")
    h.pump(lambda: h.configs_done, "the config")
    assert h.records("f")[0] == {"seed": 0, "state": "complete", "stop_reason": "step_budget",
                                 "episode_reward_mean": 4.0, "success_rate": 0.1235, "steps": 200}
    assert h.configs_done == ["f"] and not cfg.pruned and config_state(cfg) == "complete"


def test_a_failed_seeds_value_at_a_pending_step_is_left_out(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(3)
    h = Harness(ex, gates, n_jobs=3)
    cfg = new_config(study, "g", {0: {"values": [2.0]}, 1: {"values": [4.0]},
                                  2: {"values": [100.0, 0.0], "fail_at": 1}})
    h.add(cfg)
    gates.open("2.0", "2.1")                         # seed 2 reports 100 at evaluation 0, then fails
    h.pump(lambda: 2 in cfg.results, "seed 2's failure")
    assert cfg.results[2]["state"] == "failed" and cfg.reports == {0: {2: 100.0}}
    assert intermediate(cfg) == {}
    gates.open("0.0", "1.0", "0.end", "1.end")
    h.pump(lambda: h.configs_done, "the config")
    assert intermediate(cfg) == {0: 3.0}             # (2 + 4) / 2, not (2 + 4 + 100) / 3


def test_non_finite_reports_are_left_out_and_an_all_non_finite_step_is_never_reported(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    cfg = new_config(study, "n", {0: {"values": [math.inf, math.nan, 1.0]}, 1: {"values": [2.0, math.nan, 3.0]}})
    h.add(cfg)
    gates.open("0.0", "0.1", "0.2", "0.end", "1.0", "1.1", "1.2", "1.end")
    h.pump(lambda: h.configs_done, "the config")
    assert intermediate(cfg) == {0: 2.0, 2: 2.0} and cfg.reported == {0, 2}
    assert math.isnan(cfg.reports[1][0]) and math.isnan(cfg.reports[1][1])
    assert config_state(cfg) == "complete"


def test_a_queued_seed_holds_the_report_back_until_it_runs_then_pruning_stops_it(executors, gates):
    study = memory_study(optuna.pruners.ThresholdPruner(lower=1.5))
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    cfg = new_config(study, "w", {0: {"values": [1.0, 1.0]}, 1: {"values": [2.0, 2.0]},
                                  2: {"values": [0.0, 9.0]}})
    h.add(cfg)
    assert h.sched.free_slots() == 2 - 0 - 3
    h.step(0)
    assert ex.ids == ["w:hp:0", "w:hp:1"] and cfg.pending == [2] and h.sched.free_slots() == 2 - 2 - 1
    gates.open("0.0", "0.1", "0.end", "1.0", "1.1", "1.end")   # the first wave runs to the end
    h.pump(lambda: {0, 1} <= set(cfg.results) and "w:hp:2" in ex.ids, "the first wave")
    # both evaluations of seeds 0 and 1 are in, but seed 2 (live, now running) has none yet
    assert cfg.reports == {0: {0: 1.0, 1: 2.0}, 1: {0: 1.0, 1: 2.0}}
    assert intermediate(cfg) == {} and not cfg.pruned

    gates.open("2.0")                                # (1 + 2 + 0) / 3 = 1.0 < 1.5
    h.pump(lambda: cfg.finished, "the pruned config")
    assert intermediate(cfg) == {0: 1.0} and cfg.pruned
    assert ex.stops == [("w:hp:2", "pruned at evaluation 0")]   # finished seeds get no stop
    recs = h.records("w")
    assert [recs[s]["state"] for s in (0, 1, 2)] == ["complete", "complete", "pruned"]
    assert recs[2] == {"seed": 2, "state": "pruned", "stop_reason": "pruned at evaluation 0", "steps": 100}
    assert h.configs_done == ["w"] and config_state(cfg) == "pruned"


def test_prune_stops_running_seeds_and_drops_queued_ones(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1)
    cfg = new_config(study, "p", {s: {"values": [1.0]} for s in (0, 1, 2)})
    h.add(cfg)
    h.step(0)
    assert ex.ids == ["p:hp:0"] and cfg.pending == [1, 2] and h.sched.free_slots() == 1 - 1 - 2
    h.prune(cfg, "manual stop")
    assert cfg.pruned and cfg.pending == [] and h.sched.free_slots() == 0
    assert ex.stops == [("p:hp:0", "manual stop")] and h.configs_done == []  # waits for the running seed
    h.pump(lambda: h.configs_done, "the config")
    assert ex.ids == ["p:hp:0"]                      # the queued seeds never ran
    assert h.records("p") == {0: {"seed": 0, "state": "pruned", "stop_reason": "manual stop", "steps": 0}}
    assert set(cfg.results) == {0} and config_state(cfg) == "pruned"
    assert h.configs_done == ["p"] and h.sched.active == [] and h.sched.free_slots() == 1


def test_pruning_a_config_with_nothing_running_finishes_it_at_once(executors, gates):
    study = memory_study(make_pruner("none"))
    ex = executors(1)
    h = Harness(ex, gates, n_jobs=1)
    cfg = new_config(study, "q", {0: {"values": [1.0]}})
    h.add(cfg)
    h.prune(cfg, "manual stop")
    assert h.configs_done == ["q"] and h.sched.active == [] and h.seeds_done == []
    h.step(0.05)
    assert ex.ids == [] and h.configs_done == ["q"]


def test_heldout_configs_are_never_reported_nor_pruned(executors, gates):
    study = memory_study(optuna.pruners.ThresholdPruner(lower=100.0))  # would prune any tuning config
    ex = executors(2)
    h = Harness(ex, gates, n_jobs=2)
    cfg = new_config(study, "h", {0: {"values": [1.0, 1.0]}, 1: {"values": [2.0, 2.0]}}, kind="heldout")
    h.add(cfg)
    gates.open("0.0", "0.1", "0.end", "1.0", "1.1", "1.end")
    h.pump(lambda: h.configs_done, "the held-out config")
    assert ex.ids == ["h:heldout:0", "h:heldout:1"]
    assert cfg.reports == {} and intermediate(cfg) == {} and not cfg.pruned and ex.stops == []
    assert config_state(cfg) == "complete"

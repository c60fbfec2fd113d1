"""The ladder's time policy on a fake clock: a discrete-event run of seed jobs on two workers.

Each config climbs rung by rung (continuation: a climb trains only the extra steps); its seeds are separate
jobs; the config finishes a rung when its last seed does. After tuning, the re-checks (held-out: the
candidates and the baseline; test: the winner and the baseline) run at the top rung's length. The clock is
simulated, so nothing here depends on the machine's speed.
"""
from __future__ import annotations

import heapq
import itertools

import pytest

from automl.run.ladder import CostModel, plan_ladder
from automl.run.ladder_policy import LadderPolicy
from automl.search.ladder import Ladder, Promotions

PRIOR = {"policy_hidden_layer_sizes": [128, 64], "learning_epochs": 5, "mini_batches": 8, "rollouts": 32,
         "num_envs": 512}
STARTUP = 2.0
SAMPLED = {**PRIOR, "learning_rate": 1e-3}  # the prior's shape (its cost estimate), not the prior: the baseline
# re-checks at the prior's own speed while sampled configs run ``slow`` x as fast


def simulate(budget_s: float, *, slow: float, prior_rate: float = 40_000.0, seeds: int = 3, n_jobs: int = 2):
    """Run the policy until the budget's end; configs' true speed is ``slow`` x the prior's (their shapes
    are the prior's, so only measurement reveals it). Value of a config: its quality x steps / top."""
    s_step = 1.0 / prior_rate
    plan = plan_ladder(total_s=budget_s, top_steps=2_000_000, seeds=seeds, n_jobs=n_jobs, s_per_step=s_step,
                       startup_s=STARTUP, rollout=16384, learn_steps=100_000)
    prom = Promotions(Ladder(rungs=plan.rungs, eta=plan.eta))
    policy = LadderPolicy(prom, CostModel(PRIOR, prior_s_per_step=s_step), seeds=seeds, n_jobs=n_jobs,
                          top_k=3, startup_s=STARTUP)
    quality = itertools.cycle([0.3, 0.9, 0.5, 0.1, 0.7, 0.2, 0.8, 0.4, 0.6])
    t, free, events, seq = 0.0, n_jobs, [], itertools.count()
    pending: list[tuple[str, int, int]] = []           # seed jobs waiting for a worker: (config, rung, seed)
    left_seeds: dict[tuple[str, int], int] = {}
    busy: dict[tuple[str, int], float] = {}           # worker-seconds a climb used
    trained: dict[str, int] = {}                       # steps per seed each config trained in all
    q: dict[str, float] = {}
    in_flight = 0.0
    over = False

    def seed_s(cid: str, rung: int) -> float:
        return STARTUP + prom.ladder.extra_steps(rung) * s_step * slow

    def start_pending():
        nonlocal free, in_flight
        while free and pending:
            cid, rung, seed = pending.pop(0)
            d = seed_s(cid, rung)
            free -= 1
            heapq.heappush(events, (t + d, next(seq), cid, rung, d))

    while True:
        start_pending()
        while not over and free and not pending:
            in_flight = sum(e[0] - t for e in events) + sum(seed_s(c, r) for c, r, _ in pending)
            act = policy.next_action(left_s=budget_s - t, in_flight_s=in_flight)
            if act.kind == "promote":
                prom.mark_promoted(act.config_id, act.rung)
                cid, rung = act.config_id, act.rung
            elif act.kind == "admit":
                cid, rung = f"c{len(q):03d}", 0
                if not policy.admits(cid, SAMPLED, left_s=budget_s - t, in_flight_s=in_flight):
                    break
                q[cid] = next(quality)
                policy.register(cid, SAMPLED)
            elif act.kind == "over":
                over = True
                break
            else:
                break
            trained[cid] = prom.ladder.rungs[rung]
            left_seeds[(cid, rung)] = seeds
            pending.extend((cid, rung, s) for s in range(seeds))
            start_pending()
        if not events:
            if over or not (free and not pending):
                break
            over = True
            break
        t, _, cid, rung, d = heapq.heappop(events)
        free += 1
        busy[(cid, rung)] = busy.get((cid, rung), 0.0) + d
        left_seeds[(cid, rung)] -= 1
        if left_seeds[(cid, rung)] == 0:
            value = q[cid] * prom.ladder.rungs[rung] / 2_000_000
            policy.finished(cid, rung, value, steps=seeds * prom.ladder.extra_steps(rung),
                            train_s=busy[(cid, rung)] - seeds * STARTUP)
    tuning_end = t
    # the re-checks at the top rung's length, list-scheduled on the workers
    top = prom.ladder.rungs[-1]
    cands = policy.candidates()
    heldout = [STARTUP + top * s_step * slow] * (seeds * len(cands)) + [STARTUP + top * s_step] * seeds
    test = [STARTUP + top * s_step * slow] * seeds + [STARTUP + top * s_step] * seeds
    end = tuning_end
    for phase in (heldout, test):  # the test phase starts once the held-out phase has ended
        workers = [end] * n_jobs
        for d in sorted(phase, reverse=True):
            i = workers.index(min(workers))
            workers[i] += d
        end = max(workers)
    return dict(end=end, tuning_end=tuning_end, plan=plan, prom=prom, trained=trained, cands=cands,
                configs=len(q), policy=policy)


@pytest.mark.parametrize("budget", [600.0, 1200.0, 3600.0])
@pytest.mark.parametrize("slow", [1.0, 3.5, 10.0])
def test_budget_used_with_configs_as_fast_and_ten_times_slower_than_the_prior(slow, budget):
    run = simulate(budget, slow=slow)
    assert run["end"] >= 0.9 * budget, run["end"]                       # >= 90% of the budget used
    assert run["end"] <= budget + max(0.01 * budget, 15.0), run["end"]  # overrun <= max(1%, 15 s)
    assert run["configs"] >= 3 and run["cands"]


def test_slow_configs_make_fewer_configs_and_a_lower_top_rung():
    fast, slow = simulate(1200.0, slow=1.0), simulate(1200.0, slow=10.0)
    assert slow["configs"] < fast["configs"]
    assert fast["prom"].ladder.rungs == fast["plan"].rungs                    # the planned ladder held
    assert slow["prom"].ladder.rungs == fast["plan"].rungs[: len(slow["prom"].ladder.rungs)]
    assert len(slow["prom"].ladder.rungs) < len(fast["plan"].rungs)          # the top came down to what fits
    assert slow["policy"].cost.correction() == pytest.approx(10.0, rel=0.05)  # the measured slowdown


def test_continuation_trains_only_the_ladders_sum():
    """Total steps = for each config the rung it climbed to (each climb trains only the extra steps), and the
    promotions follow ASHA: the best of each rung went on."""
    run = simulate(1200.0, slow=1.0)
    prom, trained = run["prom"], run["trained"]
    for cid, steps in trained.items():
        assert steps == prom.ladder.rungs[max(k for k, r in prom.results.items() if cid in r)]
    top = prom.ladder.top
    assert prom.results.get(top), "some configs reached the top rung"
    # every config at the top was in the best third of each rung below when it was promoted
    q_top = {c: v / (prom.ladder.rungs[top] / 2_000_000) for c, v in prom.results[top].items()}
    assert min(q_top.values()) >= 0.7


def test_the_baseline_is_estimated_at_its_measured_speed_not_calibrations():
    """Calibration's short jobs said the prior runs at 1/40000 s per step; on the ladder, the configs with the
    prior's hyperparameters (whatever their reward weights) measured 0.75x that: the baseline's re-check
    job is estimated at the measured speed; before any such measurement, at calibration's."""
    prom = Promotions(Ladder(rungs=(100_000, 300_000), eta=3))
    policy = LadderPolicy(prom, CostModel(PRIOR, prior_s_per_step=1 / 40_000), seeds=3, n_jobs=2, top_k=1,
                          startup_s=STARTUP)
    from automl.run.ladder_policy import RECHECK_MARGIN

    at = lambda s_step: (STARTUP + 300_000 * s_step) * RECHECK_MARGIN  # noqa: E731
    assert policy._baseline_job_s() == pytest.approx(at(1 / 40_000))
    policy.register("c000", PRIOR)
    policy.register("c001", SAMPLED)
    policy.finished("c001", 0, 0.5, steps=300_000, train_s=300_000 * 2 / 40_000)   # another config: no say
    assert policy._baseline_job_s() == pytest.approx(at(1 / 40_000))
    policy.finished("c000", 0, 0.4, steps=300_000, train_s=300_000 * 0.75 / 40_000)
    assert policy._baseline_job_s() == pytest.approx(at(0.75 / 40_000))


def _slow_leader_policy(*, others_slow: float) -> LadderPolicy:
    """The 10-minute navigation run of base seed 1 (2026-12-07), 98 s into tuning with 435 s left: rungs 344k
    and 1.03M, the prior's seed job 10 s at 344k; four configs finished the lowest rung, and the best of them
    (c013) ran 2.5x slower than the prior although its shape said about as fast. ``others_slow``: the other
    three configs' speed over the prior's."""
    s_step = 10 / 344_064
    prom = Promotions(Ladder(rungs=(344_064, 1_032_192), eta=3))
    policy = LadderPolicy(prom, CostModel(PRIOR, prior_s_per_step=s_step), seeds=3, n_jobs=2, top_k=3,
                          startup_s=STARTUP)
    for cid, params, value, slow in (("c000", PRIOR, 0.13, others_slow), ("c001", SAMPLED, 0.20, others_slow),
                                     ("c002", SAMPLED, 0.07, others_slow), ("c013", SAMPLED, 0.35, 2.5)):
        policy.register(cid, params)
        policy.finished(cid, 0, value, steps=3 * 344_064, train_s=3 * 344_064 * s_step * slow)
    return policy


def test_one_slow_leader_is_set_aside_and_the_top_rung_stays():
    """Its climb to the top and its re-check there would not fit, but a config of the typical measured speed
    still can: the slow leader is set aside (never promoted, not re-checked) and the ladder keeps its top rung.
    Before, the top rung was dropped for every config, and that run trained its result for 344k steps."""
    policy = _slow_leader_policy(others_slow=1.0)
    assert not policy._top_reachable(435.0)                     # the leader's own climb and re-check
    changes = policy.adapt(435.0)
    assert changes[-1].startswith("c013 set aside")
    assert policy.promotions.ladder.rungs == (344_064, 1_032_192) and policy.set_aside == {"c013"}
    assert policy.candidates() == ["c001"] and policy._top_reachable(435.0)
    act = policy.next_action(left_s=435.0, in_flight_s=0.0)
    assert act.kind == "admit"                                  # c013 holds the rung's one promotable place
    act = policy.next_action(left_s=5000.0, in_flight_s=0.0)   # time enough for c013's climb: still never
    assert act.kind == "admit" and policy.promotions.candidates(0) == ["c013"]
    policy.register("c014", SAMPLED)
    policy.finished("c014", 0, 0.30, steps=3 * 344_064, train_s=3 * 344_064 * 10 / 344_064)
    policy.register("c015", SAMPLED)
    policy.finished("c015", 0, 0.25, steps=3 * 344_064, train_s=3 * 344_064 * 10 / 344_064)
    act = policy.next_action(left_s=400.0, in_flight_s=0.0)
    assert (act.kind, act.config_id, act.rung) == ("promote", "c014", 1)   # 6 finished: two places, c013's aside


def test_when_every_config_is_that_slow_the_top_rung_is_dropped():
    """The control: the typical measured config is as slow as the leader, so no config can reach the top
    rung and be re-checked in time: the ladder drops it (as before), nothing is set aside."""
    policy = _slow_leader_policy(others_slow=2.5)
    policy.adapt(435.0)
    assert policy.promotions.ladder.rungs == (344_064,) and policy.set_aside == set()


def test_a_pinned_top_rung_is_never_dropped():
    """--trial-steps pinned the top: even when no config can reach it in time, the ladder keeps it (the
    re-checks still train at the pinned length); nothing is set aside when nobody is faster."""
    policy = _slow_leader_policy(others_slow=2.5)
    policy.pinned = True
    changes = policy.adapt(435.0)   # it still re-checks fewer configs, down to the leader
    assert changes == ["held-out re-check of 2 configs", "held-out re-check of 1 configs"]
    assert policy.promotions.ladder.rungs == (344_064, 1_032_192) and policy.set_aside == set()


def test_a_leader_only_a_little_slower_than_typical_is_not_set_aside():
    """Set aside needs a real gap (SET_ASIDE_GAP x the typical measured seconds per step): a leader 1.2x the
    typical config's speed that cannot reach the top in time takes the top rung with it, as before."""
    policy = _slow_leader_policy(others_slow=2.5 / 1.2)
    policy.heldout_n = 1
    assert policy._typical_reachable(560.0) and not policy._top_reachable(560.0)  # only the gap is missing
    policy.adapt(560.0)
    assert policy.set_aside == set() and policy.promotions.ladder.rungs == (344_064,)

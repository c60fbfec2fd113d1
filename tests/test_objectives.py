"""Several objectives and constraints (automl/core/objectives.py) with known answers."""
import itertools
import math

import numpy as np
import pytest

from automl.core.errors import AutoMLError
from automl.core.objectives import (Objective, config_values, knee, parse_constraint, parse_metrics, pareto_front,
                                    pick, seed_value)

MAXMIN = (Objective("success_rate", "max"), Objective("train_time_s", "min"))


def _brute_front(points, signs):
    """The front by definition: no other point at least as good in every coordinate and better in one."""
    out = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            ge = all(s * a >= s * b for a, b, s in zip(q, p, signs))
            gt = any(s * a > s * b for a, b, s in zip(q, p, signs))
            dominated |= j != i and ge and gt
        if not dominated:
            out.append(i)
    return out


def test_the_front_of_a_synthetic_two_objective_problem_matches_brute_force():
    # f1 = x maximised, f2 = (x - 0.3)^2 + y minimised, on a grid: the front is y = 0 with x >= 0.3
    grid = [(x, y) for x, y in itertools.product(np.linspace(0, 1, 11), np.linspace(0, 1, 6))]
    points = [(x, (x - 0.3) ** 2 + y) for x, y in grid]
    front = pareto_front(points, MAXMIN)
    assert front == _brute_front(points, (1, -1))
    assert sorted(round(grid[i][0], 1) for i in front) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert all(grid[i][1] == 0 for i in front)
    rng = np.random.default_rng(0)
    for trial in range(20):  # random 3-objective clouds with ties
        pts = [tuple(row) for row in rng.integers(0, 5, size=(30, 3)).astype(float)]
        objs = (Objective("a", "max"), Objective("b", "min"), Objective("c", "max"))
        assert pareto_front(pts, objs) == _brute_front(pts, (1, -1, 1))


def test_the_knee_is_the_known_compromise_and_pick_takes_an_objective_s_best():
    front = [(0.0, 10.0), (0.8, 12.0), (0.9, 30.0), (1.0, 100.0)]    # success max, time min
    # scaled to [0, 1]: (0, 1), (0.8, 0.978), (0.9, 0.778), (1, 0): the knee is the second point
    assert knee(front, MAXMIN) == 1
    assert pick(front, MAXMIN, "success_rate") == 3 and pick(front, MAXMIN, "train_time_s") == 0
    assert pick(front, MAXMIN, "knee") == 1
    assert knee([(0.5, 5.0)], MAXMIN) == 0                            # one point: itself


def test_constraint_violations_are_how_far_a_config_is_on_the_wrong_side():
    c = parse_constraint("success_rate >= 0.8")
    assert c.violation({"success_rate": 0.65}) == pytest.approx(0.15) and c.violation({"success_rate": 0.9}) == 0.0
    t = parse_constraint("train_time_s / 60 <= 2")
    assert t.violation({"train_time_s": 150}) == pytest.approx(0.5) and t.violation({"train_time_s": 100}) == 0.0
    assert c.violation({"success_rate": None}) == math.inf            # no value: infeasible
    assert parse_constraint("success_rate > 0.8").violation({"success_rate": 0.8}) > 0


@pytest.mark.parametrize("text, message", [
    ("success_rate:max", "--metrics: 'success_rate:max' names one metric (allowed: two or more"),
    ("success_rate:max,speed:min", "--metrics: unknown metric 'speed' (allowed: episode_reward_mean, success_rate"),
    ("success_rate:up,wall_s:min", "--metrics: 'success_rate:up': direction 'up' (allowed: max, min)"),
])
def test_bad_metrics_are_one_line(text, message):
    with pytest.raises(AutoMLError) as e:
        parse_metrics(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    ("success_rate", "--constraint: 'success_rate' is not one comparison (allowed: one <, <=, > or >="),
    ("0.1 < success_rate < 0.9", "--constraint: '0.1 < success_rate < 0.9' is not one comparison"),
    ("speed >= 1", "--constraint: 'speed >= 1' names 'speed' (allowed: episode_reward_mean"),
    ("__import__('os') >= 1", "--constraint: '__import__('os') >= 1' uses Call"),
])
def test_bad_constraints_are_one_line(text, message):
    with pytest.raises(AutoMLError) as e:
        parse_constraint(text)
    assert str(e.value).startswith(message)


def test_metrics_are_aggregated_over_seeds_by_the_objective_in_their_direction():
    seeds = [{"state": "complete", "success_rate": s, "wall_s": w, "steps": 1000, "evals": [[200, 0.1], [400, 0.6]]}
             for s, w in [(0.5, 10.0), (0.7, 20.0), (0.9, 30.0)]] + [{"state": "failed", "wall_s": 1.0}]
    v = config_values(seeds, ["success_rate", "train_time_s", "steps_to_0.5"], "mean", 1.0,
                      {"train_time_s": "min", "steps_to_0.5": "min"})
    assert v == pytest.approx({"success_rate": 0.7, "train_time_s": 20.0, "steps_to_0.5": 400.0})
    # mean-std is pessimistic in both directions: success 0.7 - 0.2, time 20 + 10
    r = config_values(seeds, ["success_rate", "train_time_s"], "mean-std", 1.0, {"train_time_s": "min"})
    assert r == pytest.approx({"success_rate": 0.5, "train_time_s": 30.0})
    # a seed that never reaches the threshold counts its trained steps
    assert seed_value({"steps": 800, "evals": [[400, 0.1], [800, 0.2]]}, "steps_to_0.5") == 800.0


def test_the_run_s_front_and_pick_do_not_depend_on_the_order_configs_come_in():
    import random

    from automl.core.objectives import Selection
    from automl.core.record import ConfigRecord
    from automl.run import pareto

    sel = Selection(MAXMIN, (), "knee")
    # two front points equally far from the ideal point: the tie goes to the better first objective
    entries = [ConfigRecord(f"c{i}", "hp", 1, "complete", {}, score={"objectives": {
        "success_rate": s, "train_time_s": t}, "feasible": True}) for i, (s, t) in
        enumerate([(0.2, 10.0), (0.9, 50.0), (0.5, 60.0), (0.2, 12.0)])]
    picks = set()
    for seed in range(6):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        front = pareto.front(shuffled, sel)
        assert {e.config_id for e in front} == {"c0", "c1"}
        picks.add(front[0].config_id)
    assert picks == {"c1"}

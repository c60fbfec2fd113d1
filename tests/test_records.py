"""Reward-hacking alarm: shaped returns compared under the candidate's own weights."""
from automl.records import hacking_alarm


def entry(cid, true, shaped, terms, weights):
    seeds = [{"seed": s, "state": "complete", "shaped_return": shaped, "terms": terms} for s in (0, 1)]
    return {"config_id": cid, "reward_weights": weights, "seeds": seeds, "score": {"mean": true}}


INCUMBENT = entry("config_001", 0.8, 12.0, {"progress": 10.0, "goal": 1.0}, {"progress": 1.0, "goal": 2.0})


def test_more_shaped_reward_under_same_weights_and_worse_true_metric_alarms():
    # candidate weights: progress 2, goal 0 -> incumbent would earn 2*10 = 20 under them
    cand = entry("config_009", 0.5, 23.0, {"progress": 11.5, "goal": 0.0}, {"progress": 2.0, "goal": 0.0})
    alarm = hacking_alarm(cand, INCUMBENT)
    assert alarm and alarm["kind"] == "reward_hacking" and alarm["config_id"] == "config_009"
    assert "+15%" in alarm["detail"] and "-38%" in alarm["detail"]


def test_rescaled_weights_alone_do_not_alarm():
    # 10x weights inflate the shaped return 10x, but the incumbent priced the same way earns as much
    cand = entry("config_010", 0.7, 115.0, {"progress": 10.5, "goal": 0.5}, {"progress": 10.0, "goal": 20.0})
    assert hacking_alarm(cand, INCUMBENT) is None


def test_better_true_metric_never_alarms():
    cand = entry("config_011", 0.9, 40.0, {"progress": 20.0, "goal": 0.0}, {"progress": 2.0, "goal": 0.0})
    assert hacking_alarm(cand, INCUMBENT) is None


def test_without_terms_falls_back_to_own_shaped_returns():
    inc = entry("config_001", 0.8, 12.0, {}, {"progress": 1.0})
    cand = entry("config_012", 0.5, 14.0, {}, {"progress": 1.0})
    assert hacking_alarm(cand, inc) is not None

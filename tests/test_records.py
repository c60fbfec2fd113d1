"""Reward-hacking alarm: shaped returns compared under the candidate's own weights, and a
true-metric drop that must be outside the seed noise."""
from automl.search.reward import drop_beyond_noise, hacking_alarm, pooled_seed_sd


def entry(cid, true, shaped, terms, weights, spread=0.0, n=3):
    vals = [true + spread * d for d in (-1, 0, 1)][:n] if n == 3 else [true - spread, true + spread][:n]
    seeds = [{"seed": s, "state": "complete", "shaped_return": shaped, "terms": terms,
              "episode_reward_mean": v} for s, v in enumerate(vals)]
    return {"config_id": cid, "reward_weights": weights, "seeds": seeds,
            "score": {"mean": sum(vals) / len(vals)}}


INCUMBENT = entry("config_001", 0.8, 12.0, {"progress": 10.0, "goal": 1.0}, {"progress": 1.0, "goal": 2.0},
                  spread=0.02)


def test_more_shaped_reward_under_same_weights_and_worse_true_metric_alarms():
    # candidate weights: progress 2, goal 0 -> incumbent would earn 2*10 = 20 under them
    cand = entry("config_009", 0.5, 23.0, {"progress": 11.5, "goal": 0.0}, {"progress": 2.0, "goal": 0.0},
                 spread=0.02)
    alarm = hacking_alarm(cand, INCUMBENT, pooled_sd=0.02)
    assert alarm and alarm["kind"] == "reward_hacking" and alarm["config_id"] == "config_009"
    assert "+15%" in alarm["detail"] and "-38%" in alarm["detail"]
    # the test used is named in the text: disjoint CIs and the drop in pooled standard errors
    # (0.3 / (0.02 * sqrt(2/3)) = 18.4)
    assert "CIs" in alarm["detail"] and "disjoint" in alarm["detail"] and "18.4 pooled s.e." in alarm["detail"]


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
    alarm = hacking_alarm(cand, inc)
    assert alarm["kind"] == "reward_hacking" and alarm["config_id"] == "config_012"
    # the reference is the incumbent's own shaped return, 12: 14 is +17%; 0.5 vs 0.8 is -38%
    assert alarm["detail"].startswith("shaped return +17% (both under its weights), true metric -38% "
                                      "vs incumbent config_001 ("), alarm["detail"]
    # 13 is only +8% over that reference: under the 10% margin, so no alarm
    assert hacking_alarm(entry("config_013", 0.5, 13.0, {}, {"progress": 1.0}), inc) is None


def test_demo_case_one_episode_of_difference_is_noise():
    # the case: incumbent 0.026, candidate 0.005-0.021 over 2 seeds of 32 episodes,
    # about one episode apart; "true metric -40%" must not be an alarm.
    inc = entry("config_001", 0.026, 10.0, {}, {"progress": 1.0}, spread=0.011, n=2)   # 0.015, 0.037
    cand = entry("config_007", 0.013, 14.0, {}, {"progress": 1.0}, spread=0.008, n=2)  # 0.005, 0.021
    assert hacking_alarm(cand, inc) is None
    beyond, text = drop_beyond_noise([0.005, 0.021], [0.015, 0.037], None)
    assert not beyond and "overlap" in text


def test_disjoint_but_within_pooled_noise_does_not_alarm():
    # disjoint on these two seeds, but the run's configs vary 0.05 from seed to seed:
    # a 0.04 drop is 0.04 / (0.05 * 1) = 0.8 standard errors
    beyond, text = drop_beyond_noise([0.50, 0.51], [0.54, 0.55], pooled_sd=0.05)
    assert not beyond and "0.8 pooled s.e." in text
    beyond, _ = drop_beyond_noise([0.50, 0.51], [0.54, 0.55], pooled_sd=0.01)
    assert beyond  # 4.0 standard errors


def test_pooled_seed_sd_known_answer():
    # two configs: values (1, 3) -> ss 2, dof 1; (2, 4, 6) -> ss 8, dof 2 -> sqrt(10 / 3)
    a = {"seeds": [{"state": "complete", "episode_reward_mean": v} for v in (1.0, 3.0)]}
    b = {"seeds": [{"state": "complete", "episode_reward_mean": v} for v in (2.0, 4.0, 6.0)]
         + [{"state": "failed"}]}
    assert abs(pooled_seed_sd([a, b]) - (10 / 3) ** 0.5) < 1e-12
    assert pooled_seed_sd([{"seeds": [{"state": "complete", "episode_reward_mean": 1.0}]}]) is None

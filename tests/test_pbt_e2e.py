"""--mode pbt end to end, as a user runs it: the real command on the batched cartpole, a tiny budget.

One uninterrupted run is checked against what its own record implies (ready points, the rules' copies on the
recorded scores, the lineage, the winner, the replay on the test seeds), and a run killed with SIGKILL after
two ready points, then resumed with the same command, must end exactly as the uninterrupted one: same
scores, copies, lineage, winner and test scores (training is deterministic on CPU, a segment resumes from
its saved group state bit for bit, and the decisions' random stream is fixed per ready point).
The slow test in test_pbt.py does the same kill on a longer run by watching the state file.
"""
import math

import pytest
import yaml
from _cli import TINY, automl, state
from _paused_driver import kill_when_paused

from automl.run.pbt import _rng
from automl.search import pbt as rules_mod
from automl.train.torch_pbt import member_values
from automl.train.torch_train import train_seed_torch

POPULATION, READY, TOTAL = 4, 1024, 4096
TIMING = {"wall_s", "train_s", "eval_s", "copy_s", "bookkeeping_s", "peak_memory_mb"}


def command(run_dir):
    return ["--mode", "pbt", "--env", "cartpole", "--space", TINY, "--budget-hours", "0.3",
            "--population", str(POPULATION), "--trial-steps", str(TOTAL), "--ready-steps", str(READY),
            "--eval-episodes", "4", "--n-jobs", "1", "--seeds", "1", "--run-dir", str(run_dir), "--quiet"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    r = automl(*command(run_dir))
    assert r.returncode == 0, r.stderr
    return run_dir


def _untimed(pop: dict) -> dict:
    out = {k: v for k, v in pop.items() if k not in TIMING}
    out["ready"] = [{k: v for k, v in r.items() if k not in TIMING} for r in pop["ready"]]
    return out


def test_every_ready_point_is_recorded_and_its_copies_are_the_rules_on_its_scores(whole):
    st = state(whole)
    pop = st["pbt"]
    assert st["status"] == "finished" and pop["done"]
    assert [(r["index"], r["steps"]) for r in pop["ready"]] == [(i, i * READY) for i in range(1, TOTAL // READY + 1)]
    s = pop["settings"]
    rule = rules_mod.PBTRules(quantile=s["quantile"], perturb=tuple(s["perturb"]), resample_p=s["resample_p"])
    n_copies = 0
    for r in pop["ready"]:
        assert len(r["scores"]) == POPULATION and all(v is not None and math.isfinite(v) for v in r["scores"])
        pairs = rules_mod.exploit(r["scores"], rule, _rng(0, r["index"]), r["se"])
        assert [(c["dst"], c["src"]) for c in r["copies"]] == pairs
        for c in r["copies"]:
            assert c["gap"] == pytest.approx(r["scores"][c["src"]] - r["scores"][c["dst"]], abs=1e-3)
            assert c["gap"] > max(r["margin"], c["noise"])
        n_copies += len(r["copies"])
    assert n_copies > 0  # the run exercised exploit/explore


def test_the_lineage_follows_the_recorded_copies(whole):
    pop = state(whole)["pbt"]
    copies = {(r["steps"], c["src"]) for r in pop["ready"] for c in r["copies"]}
    last_copy = {}
    for r in pop["ready"]:
        for c in r["copies"]:
            last_copy[c["dst"]] = (r["steps"], c["src"])
    for m in pop["members"]:
        steps = [h["from_step"] for h in m["history"]]
        assert steps[0] == 0 and steps == sorted(steps)
        # every copy in a member's ancestry happened at a ready point, from the source it names
        assert {(h["from_step"], h["copied_from"]) for h in m["history"] if "copied_from" in h} <= copies
        if m["id"] in last_copy:  # its current values came from its last copy
            assert (m["history"][-1]["from_step"], m["history"][-1]["copied_from"]) == last_copy[m["id"]]
            assert m["params"] == m["history"][-1]["params"]
        else:
            assert len(m["history"]) == 1 and m["seed"] == m["id"]


def test_the_winner_is_the_best_at_the_last_ready_point_and_its_schedule_is_replayed_on_the_test_seed(whole):
    st = state(whole)
    pop = st["pbt"]
    last = pop["ready"][-1]["scores"]
    assert pop["winner"] == max(range(POPULATION), key=lambda i: (last[i], -i))
    best = yaml.safe_load((whole / "best.yaml").read_text())
    winner = pop["members"][pop["winner"]]
    assert best["config_id"] == f"pbt_m{pop['winner']}" and best["tuning_score"] == last[pop["winner"]]
    assert [h["from_step"] for h in best["schedule"]] == [h["from_step"] for h in winner["history"]]
    assert best["test_seeds"] == [2000] and best["n_timesteps"] == TOTAL == best["params"]["n_timesteps"]
    tests = {t["config_id"]: t for t in st["trials"] if t["kind"] == "test"}
    assert set(tests) == {best["config_id"], "baseline"}
    plan = st["plan"]
    # the known answer: the winner's schedule and the prior, each trained from scratch on seed 2000
    sched = [{"from_step": h["from_step"], "values": member_values(h["params"]), "weights": h["reward_weights"]}
             for h in best["schedule"]]
    kw = dict(env="cartpole", seed=2000, total_steps=TOTAL, eval_every=plan["eval_every"],
              eval_episodes=plan["eval_episodes"], device="cpu")
    replayed = train_seed_torch(best["schedule"][0]["params"], schedule=sched,
                                reward_weights=best["schedule"][0]["reward_weights"], **kw)
    base = train_seed_torch(best["baseline"]["params"], reward_weights=best["baseline"]["reward_weights"], **kw)
    for config_id, want in ((best["config_id"], replayed), ("baseline", base)):
        (seed,) = tests[config_id]["seeds"]
        assert (seed["seed"], seed["steps"], seed["state"]) == (2000, TOTAL, "complete")
        assert seed["episode_reward_mean"] == pytest.approx(want.episode_reward_mean, abs=1e-3), config_id
    assert best["test_score"]["mean"] == pytest.approx(replayed.episode_reward_mean, abs=1e-3)
    assert best["baseline"]["test_score"]["mean"] == pytest.approx(base.episode_reward_mean, abs=1e-3)


def test_a_run_killed_after_two_ready_points_resumes_to_the_uninterrupted_result(whole, tmp_path):
    run_dir = tmp_path / "run"
    seen = kill_when_paused(tmp_path / "paused.json", 2, command(run_dir))
    assert seen["ended"] == ["pbt:r0:g0:0", "pbt:r1:g0:0"] and seen["in_flight"] == ["pbt:r2:g0:0"]
    before = state(run_dir)
    assert before["status"] == "running" and len(before["pbt"]["ready"]) == 2 and not before["pbt"]["done"]

    again = automl(*command(run_dir))
    assert again.returncode == 0, again.stderr
    after, ref = state(run_dir), state(whole)
    assert after["pbt"]["ready"][:2] == before["pbt"]["ready"]           # the recorded lineage kept as it was
    assert _untimed(after["pbt"]) == _untimed(ref["pbt"])
    assert after["test"] == ref["test"] and after["status"] == "finished"
    best, ref_best = (yaml.safe_load((d / "best.yaml").read_text()) for d in (run_dir, whole))
    assert best == ref_best
    # only the last ready point's group states are kept (the killed run's in-flight one was dropped)
    assert sorted(p.name for p in (run_dir / "checkpoints" / "pbt").iterdir()) == [f"r{TOTAL // READY:04d}"]

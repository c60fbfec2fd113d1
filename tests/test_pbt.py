"""--mode pbt: per-member values on the seed axis, full-state copies, schedule replay, lineage and resume.

The decisions themselves (who copies whom, the noise margin, explore within bounds) are tested in
test_pbt_rules.py; here the trainer and the run carry them out.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from _cli import ROOT, TINY, automl, state

from automl.search import pbt as rules_mod
from automl.core.config import ParamSpec
from automl.train import checkpoint, torch_state
from automl.train.torch_pbt import copy_member, copy_member_from, member_values, train_segment
from automl.train.torch_ppo import MEMBER_PARAMS, Args, SeedBatch, advantages, check_finite, collect, update
from automl.train.torch_train import train_seeds_torch

ARGS = Args(n_steps=16, num_envs=8, batch_size=64, n_epochs=2, learning_rate=1e-3, normalize=True)
PARAMS = {"num_envs": 8, "rollouts": 16, "mini_batches": 2, "learning_epochs": 2, "learning_rate": 1e-3,
          "discount_factor": 0.98, "lambda_param": 0.9}


def _run(seeds, values=None, weights=None, rollouts=2):
    run = SeedBatch(ARGS, "cartpole", seeds, eval_episodes=4, device=torch.device("cpu"), reward_weights=None)
    run.reset()
    for s, v in (values or {}).items():
        run.set_values(s, v, (weights or {}).get(s))
    for _ in range(rollouts):
        collect(run, None)
        advantages(run)
        lr = ARGS.learning_rate if run.hp is None else run.hp["learning_rate"]
        check_finite(run, update(run, lr))
    return run


def _state(run, s):
    opt = run.optimizer
    out = {f"p.{k}": v[s] for k, v in run.policy.params.items()}
    out.update({f"m{i}": t[s] for i, t in enumerate(opt.exp_avg + opt.exp_avg_sq)})
    out["adam_steps"] = opt.steps[s]
    out.update({"obs_mean": run.norm.obs_rms.mean[s], "obs_var": run.norm.obs_rms.var[s],
                "ret_mean": run.norm.ret_rms.mean[s], "ret_var": run.norm.ret_rms.var[s]})
    return {k: v.clone() for k, v in out.items()}


def test_per_member_values_equal_to_the_config_train_exactly_as_the_plain_run():
    plain = _run([3, 4])
    same = _run([3, 4], values={0: {k: getattr(ARGS, k) for k in MEMBER_PARAMS}})  # per-seed tensors, same values
    for k, v in plain.policy.params.items():
        assert torch.allclose(v, same.policy.params[k], atol=1e-6), k
    other = _run([3, 4], values={1: {"learning_rate": 3e-3, "gamma": 0.9}})
    assert torch.equal(other.policy.params["pi.0.w"][0], same.policy.params["pi.0.w"][0])  # member 0 unaffected
    assert not torch.allclose(other.policy.params["pi.0.w"][1], same.policy.params["pi.0.w"][1])


def test_the_bottom_member_copies_the_clear_best_then_differs_only_in_the_explored_values():
    values = {i: {"learning_rate": lr, "ent_coef": 0.001 * i} for i, lr in enumerate((1e-3, 2e-3, 5e-4, 8e-4))}
    weights = {i: {"alive": 1.0, "pole_angle": -0.5 * i} for i in range(4)}
    run = _run([0, 1, 2, 3], values, weights)
    scores = [500.0, 20.0, 180.0, 200.0]                      # member 0 clearly best, member 1 clearly worst
    rule = rules_mod.PBTRules(quantile=0.25)
    pairs = rules_mod.exploit(scores, rule, random.Random(0))
    assert pairs == [(1, 0)]
    src_before = _state(run, 0)
    copy_member(run, 1, 0)
    after = _state(run, 1)
    assert all(torch.equal(after[k], src_before[k]) for k in src_before)     # the full learned state
    assert {k: float(run.hp[k][1]) for k in MEMBER_PARAMS} == {k: float(run.hp[k][0]) for k in MEMBER_PARAMS}
    assert run.envs[1].reward_weights == run.envs[0].reward_weights
    # explore: lr perturbed (x0.8 or x1.2), the rest kept
    specs = [ParamSpec("learning_rate", "loguniform", 1e-4, 1e-2, log=True)]
    rng = random.Random(5)
    new, new_w = rules_mod.explore({"learning_rate": 1e-3}, specs, dict(run.envs[0].reward_weights),
                                   {"pole_angle": {"low": -2.0, "high": 0.0}}, rule, rng)
    run.set_values(1, {"learning_rate": new["learning_rate"]}, new_w)
    changed = {k for k in MEMBER_PARAMS if float(run.hp[k][1]) != float(run.hp[k][0])}
    assert changed == {"learning_rate"}
    w0, w1 = run.envs[0].reward_weights, run.envs[1].reward_weights
    assert {k for k in w0 if w0[k] != w1[k]} <= {"pole_angle"}
    assert all(torch.equal(_state(run, 1)[k], src_before[k]) for k in src_before)   # values, not state
    assert run.envs[1]._weights[:, 0, 0].tolist() == pytest.approx([w1[k] for k in run.envs[1].reward_terms])


def test_a_copy_through_the_saved_group_state_equals_the_in_memory_copy(tmp_path):
    values = {i: {"learning_rate": lr} for i, lr in enumerate((1e-3, 2e-3))}
    a = _run([0, 1], values)
    path = str(tmp_path / "g.pt")
    checkpoint.save(path, {"ids": [0, 1]}, torch_state.run_state(a, next_eval=0, eval_s=0.0, spent={}))
    b = _run([5, 6], {0: {"learning_rate": 3e-4}})
    copy_member_from(b, 1, checkpoint.load(path)["state"], 0, {"learning_rate": 1e-3}, None)
    want = _state(a, 0)
    got = _state(b, 1)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_segment_resumes_from_its_saved_group_state_bit_for_bit(tmp_path):
    kw = dict(member_params=[PARAMS, {**PARAMS, "learning_rate": 2e-3}], env="cartpole", seeds=[0, 1], ids=[0, 1],
              weights=[{}, {"pole_angle": -1.0}], total_steps=4096, eval_episodes=4, device="cpu", group=0)
    whole = train_segment(**kw, state_dir=str(tmp_path / "a"), ready=0, to_step=1024)
    whole = train_segment(**kw, state_dir=str(tmp_path / "a"), ready=1, to_step=2048)
    train_segment(**kw, state_dir=str(tmp_path / "b"), ready=0, to_step=1024)
    again = train_segment(**kw, state_dir=str(tmp_path / "b"), ready=1, to_step=2048)
    assert [m["value"] for m in whole["members"]] == [m["value"] for m in again["members"]]
    assert whole["steps"] == 2048
    # a copy at the ready point: member 1 takes member 0's state, then trains with its own values
    copied = train_segment(**kw, state_dir=str(tmp_path / "a"), ready=1, to_step=2048, copies={1: (0, 0)})
    # known answer: the same as training from a saved state in which member 1's learned state (weights,
    # Adam moments and step; PARAMS has no normalisers) was overwritten by member 0's; its own env stream
    # and values stay; member 0 trains exactly as without the copy
    saved = checkpoint.load(os.path.join(tmp_path, "a", "r0001", "g0.pt"))
    st = saved["state"]
    moments = [*st["adam"]["exp_avg"], *st["adam"]["exp_avg_sq"], st["adam"]["steps"]]
    assert st["norm"] is None
    for t in [*st["params"].values(), *moments]:
        t[1] = t[0]
    checkpoint.save(os.path.join(tmp_path, "c", "r0001", "g0.pt"), saved["header"], st)
    by_hand = train_segment(**kw, state_dir=str(tmp_path / "c"), ready=1, to_step=2048)
    assert copied["members"] == by_hand["members"] and copied["steps"] == by_hand["steps"] == 2048
    assert copied["members"][0] == whole["members"][0] and copied["members"][1] != whole["members"][1]


def test_replaying_a_schedule_is_deterministic_on_cpu_and_the_schedule_matters():
    sched = [{"from_step": 0, "values": member_values(PARAMS), "weights": {"alive": 1.0}},
             {"from_step": 1024, "values": {**member_values(PARAMS), "learning_rate": 3e-3, "ent_coef": 0.01},
              "weights": {"pole_angle": -1.5}}]
    kw = dict(env="cartpole", seeds=[7, 8], total_steps=2048, eval_every=1024, eval_episodes=4, device="cpu")
    one = train_seeds_torch(PARAMS, schedule=sched, **kw)
    two = train_seeds_torch(PARAMS, schedule=sched, **kw)
    plain = train_seeds_torch(PARAMS, **kw)
    assert [(r.seed, r.state, r.steps) for r in one] == [(7, "complete", 2048), (8, "complete", 2048)]
    assert [r.episode_reward_mean for r in one] == [r.episode_reward_mean for r in two]
    assert [(r.evals, r.shaped_return, r.terms) for r in one] == [(r.evals, r.shaped_return, r.terms) for r in two]
    assert [r.evals[0] for r in one] == [r.evals[0] for r in plain]        # the same until the change
    # after it: other weights (the shaped return counts pole_angle) and other training
    assert [(r.evals[-1], r.shaped_return) for r in one] != [(r.evals[-1], r.shaped_return) for r in plain]


def command(run_dir, *extra):
    return ["--mode", "pbt", "--env", "cartpole", "--space", TINY, "--budget-hours", "0.3", "--population", "4",
            "--trial-steps", "12288", "--ready-steps", "1024", "--eval-episodes", "8", "--n-jobs", "1",
            "--seeds", "2", "--run-dir", str(run_dir), "--quiet", *extra]


def _lineage_ok(pop):
    ids = {m["id"] for m in pop["members"]}
    for m in pop["members"]:
        steps = [h["from_step"] for h in m["history"]]
        assert steps[0] == 0 and steps == sorted(steps)
        assert all(h.get("copied_from", 0) in ids for h in m["history"])
    for r in pop["ready"]:
        for c in r["copies"]:
            assert c["gap"] > max(r["margin"], c["noise"])


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_a_pbt_run_killed_with_sigkill_resumes_and_keeps_its_lineage(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automl", *command(run_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            pop = state(run_dir).get("pbt") or {}
            if len(pop.get("ready", [])) >= 3:
                before = pop
                break
        except (OSError, yaml.YAMLError, TypeError, AttributeError):
            pass
        time.sleep(0.1)
    assert proc.poll() is None and before, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)

    again = automl(*command(run_dir))
    assert again.returncode == 0, again.stderr
    st = state(run_dir)
    pop = st["pbt"]
    k = len(before["ready"])
    assert pop["ready"][:k] == before["ready"]                       # recorded lineage kept as it was
    assert [r["index"] for r in pop["ready"]] == list(range(1, 13)) and pop["ready"][-1]["steps"] == 12288
    _lineage_ok(pop)
    assert pop["done"] and pop["winner"] == max(range(4), key=lambda i: (pop["ready"][-1]["scores"][i], -i))
    best = yaml.safe_load((run_dir / "best.yaml").read_text())
    assert best["config_id"] == f"pbt_m{pop['winner']}" and best["test_score"] is not None
    assert best["baseline"]["test_score"] is not None and best["schedule"][0]["from_step"] == 0
    tests = {t["config_id"]: t for t in st["trials"] if t["kind"] == "test"}
    assert set(tests) == {best["config_id"], "baseline"}
    assert all(s["seed"] >= 2000 and s["steps"] == 12288 for t in tests.values() for s in t["seeds"])
    # only the last ready point's group states are kept
    assert sorted(os.listdir(run_dir / "checkpoints" / "pbt")) == ["r0012"]


@pytest.mark.parametrize("flags, message", [
    (["--quantile", "0.7"], "--quantile: 0.7 (allowed: 0 < q <= 0.5)"),
    (["--perturb", "0.8,x"], "--perturb: '0.8,x' is not a comma-separated list of numbers"),
    (["--population", "1"], "--population: 1 (allowed: >= 2 with --mode pbt)"),
])
def test_bad_pbt_flags_get_one_line(tmp_path, flags, message):
    r = automl("--mode", "pbt", "--budget-hours", "0.01", "--run-dir", str(tmp_path / "r"), "--dry-run", *flags)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_lineage_views_show_every_member_at_every_ready_point_and_the_winners_schedule(tmp_path):
    from automl.analysis import pbt_plots

    h0 = {"from_step": 0, "params": {"learning_rate": 1e-3, "rollouts": 32}, "reward_weights": {"goal": 10.0}}
    h1 = {"from_step": 0, "params": {"learning_rate": 2e-3, "rollouts": 32}, "reward_weights": {"goal": 10.0}}
    copied = {"from_step": 100, "params": {"learning_rate": 2.4e-3, "rollouts": 32}, "reward_weights": {"goal": 12.0},
              "copied_from": 1}
    pop = {"members": [{"id": 0, "history": [h0]}, {"id": 1, "history": [h1]}, {"id": 2, "history": [h1, copied]}],
           "ready": [{"index": 1, "steps": 100, "scores": [0.2, 0.9, 0.1], "margin": 0.05,
                      "copies": [{"dst": 2, "src": 1, "gap": 0.8, "noise": 0.1}]},
                     {"index": 2, "steps": 200, "scores": [0.3, 0.8, 0.95], "margin": 0.05, "copies": []}],
           "winner": 2, "bookkeeping_s": 0.5, "wall_s": 100.0}
    assert pbt_plots.varied(pop) == ["learning_rate", "reward.goal"]       # rollouts never differs
    assert pbt_plots.summary(pop) == ("pbt: 3 members, 2 ready points to 200 steps, 1 copies, winner m2; "
                                      "exploit/explore bookkeeping 0.50% of the population's wall time")
    files = pbt_plots.write(pop, tmp_path)
    assert [f.name for f in files] == ["pbt_population.png", "pbt_schedule.png", "pbt_lineage.csv"]
    rows = (tmp_path / "pbt_lineage.csv").read_text().splitlines()
    assert rows[0] == "ready,steps,member,score,copied_from,margin" and len(rows) == 1 + 2 * 3
    assert rows[3] == "1,100,2,0.1,1,0.05" and rows[6] == "2,200,2,0.95,,0.05"


GYM_PARAMS = {"num_envs": 2, "rollouts": 64, "mini_batches": 2, "learning_epochs": 2, "learning_rate": 1e-3}


def test_sb3_a_copy_goes_through_the_checkpoint_files_and_the_explored_values_survive_the_restore(tmp_path):
    from automl.train.sb3_pbt import train_member
    from automl.train import sb3_state
    from automl.train.sb3_state import set_values, take as _take
    from automl.train.sb3_train import build_run
    from automl.train.torch_pbt import group_path

    d = str(tmp_path)
    kw = dict(env="CartPole-v1", state_dir=d, ready=0, to_step=256, total_steps=1024, eval_episodes=2, device="cpu")
    for g, lr in ((0, 1e-3), (1, 3e-4)):
        out = train_member([{**GYM_PARAMS, "learning_rate": lr}], seeds=[g], ids=[g], weights=[{}], group=g, **kw)
        assert out["steps"] == 256 and out["members"][0]["value"] > 0 and out["members"][0]["se"] is not None
    src = checkpoint.load(group_path(d, 1, 0))["state"]
    # what train_member does at a ready point: restore its own file, take the source's, then set the values
    run = build_run(GYM_PARAMS, "CartPole-v1", seed=1, eval_episodes=2, device="cpu")
    raw, train_env, model = run.raw_env, run.train_env, run.model
    sb3_state.restore(model, raw, train_env, checkpoint.load(group_path(d, 1, 1))["state"], seed=1, total=1025)
    _take(model, train_env, src)
    assert all(torch.equal(v, src["policy"][k]) for k, v in model.policy.state_dict().items())
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)   # the source's, from its file
    set_values(model, raw, train_env, {"learning_rate": 1.2e-3, "gamma": 0.95, "clip_range": 0.25}, None)
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1.2e-3)
    assert model.lr_schedule(0.5) == pytest.approx(1.2e-3) and model.clip_range(0.5) == pytest.approx(0.25)
    assert model.gamma == model.rollout_buffer.gamma == 0.95
    # and through train_member: the saved state after a copy carries the explored lr, not the restored one
    out = train_member([{**GYM_PARAMS, "learning_rate": 1.2e-3}], seeds=[1], ids=[1], weights=[{}], group=1,
                       copies={1: (0, 0)}, **{**kw, "ready": 1, "to_step": 512})
    saved = checkpoint.load(group_path(d, 2, 1))["state"]
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1.2e-3) and out["steps"] == 512


def test_sb3_replaying_a_schedule_is_deterministic_and_the_schedule_matters():
    sched = [{"from_step": 0, "values": member_values(GYM_PARAMS), "weights": {}},
             {"from_step": 256, "values": {**member_values(GYM_PARAMS), "learning_rate": 5e-3}, "weights": {}}]
    from automl.train.sb3_train import train_seed

    kw = dict(env="CartPole-v1", seed=3, total_steps=512, eval_every=256, eval_episodes=4, device="cpu")
    one, two, plain = (train_seed(GYM_PARAMS, schedule=s, **kw) for s in (sched, sched, None))
    assert one.evals == two.evals and one.evals[0] == plain.evals[0] and one.evals[-1] != plain.evals[-1]


@pytest.mark.slow  # overlaps a default test; make test-slow runs it
def test_a_pbt_run_on_a_gymnasium_id_trains_members_one_per_job_with_the_sb3_trainer(tmp_path):
    r = automl("--mode", "pbt", "--env", "CartPole-v1", "--budget-hours", "0.3", "--population", "3",
               "--trial-steps", "4096", "--ready-steps", "2048", "--eval-episodes", "4", "--n-jobs", "1", "--seeds", "2",
               "--run-dir", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr
    st = state(tmp_path)
    pop = st["pbt"]
    assert st["trainer"] == "sb3" and pop["settings"]["groups"] == 3 and len(pop["ready"]) == 2
    _lineage_ok(pop)
    assert all(v is not None for v in pop["ready"][-1]["se"])
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["test_score"]["n_seeds"] == 2 and best["baseline"]["test_score"]["n_seeds"] == 2
    zoo = automl("export", "--run-dir", str(tmp_path), "--format", "rlzoo")
    assert zoo.returncode == 0, zoo.stderr
    text = (tmp_path / "rlzoo_hyperparams.yml").read_text()
    assert "its schedule over training is in best.yaml" in text and "n_timesteps: 4096" in text


def test_a_copy_across_groups_takes_the_sources_slice_of_its_groups_file(tmp_path):
    d = str(tmp_path)
    base = dict(env="cartpole", total_steps=4096, eval_episodes=4, device="cpu", state_dir=d)
    groups = {0: ([0, 1], [0, 1]), 1: ([2, 3], [2, 3])}
    for g, (ids, seeds) in groups.items():
        train_segment([{**PARAMS, "learning_rate": 1e-3 * (i + 1)} for i in ids], seeds=seeds, ids=ids,
                      weights=[{}, {}], group=g, ready=0, to_step=1024, **base)
    # member 2 (group 1) copies member 0 (group 0); member 3 keeps its own state
    train_segment([{**PARAMS, "learning_rate": 1e-3}, {**PARAMS, "learning_rate": 3e-3}], seeds=[2, 3], ids=[2, 3],
                  weights=[{}, {}], group=1, ready=1, to_step=1024, copies={2: (0, 0)}, **base)   # no training
    src = checkpoint.load(str(tmp_path / "r0001" / "g0.pt"))["state"]
    got = checkpoint.load(str(tmp_path / "r0002" / "g1.pt"))["state"]
    assert all(torch.equal(got["params"][k][0], src["params"][k][0]) for k in src["params"])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got["adam"]["exp_avg"], src["adam"]["exp_avg"]))
    before = checkpoint.load(str(tmp_path / "r0001" / "g1.pt"))["state"]
    assert all(torch.equal(got["params"][k][1], before["params"][k][1]) for k in src["params"])   # member 3 kept
    assert not torch.equal(got["params"]["pi.0.w"][0], before["params"]["pi.0.w"][0])


def test_the_replay_is_planned_from_the_median_segment_so_one_slow_ready_point_does_not_drop_a_test_seed():
    """Measured on a 20-minute navigation run: ten ready points of 704,512 steps at ~59 s, the last 66 s. At the
    last one's speed the replay reserve grew past the time left and the test phase dropped a seed (18% of the
    budget unused); the median keeps the plan at the population's usual speed."""
    from types import SimpleNamespace

    from automl.run.pbt import population_s_per_step, replay_reserve_s

    seg = 704_512
    walls = [55.4, 60.1, 62.5, 59.7, 57.9, 59.4, 58.3, 58.3, 60.4, 66.3]
    pop = {"settings": {"population": 8, "total_steps": 10 * seg},
           "ready": [{"steps": seg * (i + 1), "wall_s": w} for i, w in enumerate(walls)]}
    assert population_s_per_step(pop) == pytest.approx(59.55 / seg)  # not the last segment's 66.3 / seg
    ctx = SimpleNamespace(cfg=SimpleNamespace(n_jobs=2), inputs=SimpleNamespace(test_seeds=[2000, 2001, 2002]),
                          plan=SimpleNamespace(train_steps_per_s=50_000.0, steps_per_s=50_000.0))
    # 3 waves (6 test jobs on 2 workers) of 7.05M steps at 59.55 s / (4 members x 704,512 steps), 1.2 margin
    assert replay_reserve_s(ctx, pop) == pytest.approx(1.2 * 3 * 10 * seg * 59.55 / (4 * seg) + 15.0)
    assert replay_reserve_s(ctx, pop) < 599  # the time that run had left for its test phase: all 3 seeds fit
    assert population_s_per_step({"settings": pop["settings"], "ready": []}) is None

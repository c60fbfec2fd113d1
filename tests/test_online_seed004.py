"""Seed 004's tune recipe as the seed writes it (tests/data/seed004_tune_recipe.yaml) and what issue 27 asks of it:
nested actuators and their aliases, supervised names refused with PPO's equivalents, next_val_epoch_end, a
chosen primary metric, grad/norm as a backup, Adam and loss-weight actuators with full rollback on both
trainers, `tune enable` after a reject streak, export-recipe by extension, production mode, a tune: section."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from automl.api import train_tuned
from automl.cli.main import main
from automl.core.errors import AutoMLError
from automl.core.tune_recipe import Mutation, Recipe, load_recipe, recipe_from_dict
from automl.search.online import OnlineTuner
from automl.search.online_judge import judge_segment
from automl.train.sb3_train import train_seed
from automl.train.torch_train import train_seed_torch
from _cli import ROOT

SEED = ROOT / "tests" / "data" / "seed004_tune_recipe.yaml"
PPO = ROOT / "tests" / "data" / "seed004_tune_recipe_ppo.yaml"
CART = dict(num_envs=8, rollouts=32, mini_batches=2, learning_epochs=2, learning_rate=1e-3)
RUN = dict(total_steps=4096, eval_every=512, eval_episodes=4, device="cpu")
TRAINERS = [("torch", train_seed_torch), ("sb3", train_seed)]


def _logs(run_dir, seed=0):
    d = run_dir / "tune" / f"seed_{seed}"
    read = lambda name: [json.loads(x) for x in (d / name).read_text().splitlines()] \
        if (d / name).exists() else []  # noqa: E731
    return read("tune.mutations.jsonl"), read("tune.segments.jsonl"), json.loads((d / "tune.summary.json").read_text())


def test_seed_004s_own_recipe_is_refused_in_one_line_per_supervised_name_naming_ppos_equivalents():
    with pytest.raises(AutoMLError) as e:
        load_recipe(SEED)
    assert str(e.value) == (f"{SEED}: objective.primary: 'val/loss' is a supervised model's metric: PPO has no "
                            "validation loss (allowed: an evaluation metric: true_metric (the task's metric: "
                            "success_rate on navigation, reference_return otherwise), success_rate, reference_return, "
                            "shaped_return)")
    doc = yaml.safe_load(SEED.read_text())
    doc["objective"].update(primary="true_metric", mode="max")
    with pytest.raises(AutoMLError) as e:
        recipe_from_dict(doc, "seed004.yaml")
    assert str(e.value) == ("seed004.yaml: actuators.loss.keys.sp_mse_w: 'sp_mse_w' is not a loss weight of PPO "
                            "(allowed: vf_coef, ent_coef (value loss and entropy bonus weights; also value_loss_scale, "
                            "entropy_loss_scale); reward weights as reward.keys.<term>)")


def test_the_seed_recipe_with_ppo_names_loads_its_nesting_aliases_horizon_and_backup():
    r = load_recipe(PPO)
    lr, vf = r.mutations
    assert (lr.name, lr.mode, lr.bounds, lr.prior_center, lr.cooldown, lr.risk) == \
        ("learning_rate", "mult", (0.7, 1.2), 0.95, 2, "low")                     # opt.mutations.lr_mult
    assert (vf.name, vf.mode, vf.bounds, vf.cooldown) == ("vf_coef", "mult", (0.5, 2.0), 1)   # loss.keys.vf_coef
    assert r.horizon == 1 and r.metric == "true_metric" and r.startup_trials == 8     # next_val_epoch_end
    assert r.backups("learning_rate") == [("grad/norm", "min")] and r.backups("vf_coef") == []
    nested = recipe_from_dict({"actuators": {"opt": {"mutations": {"wd_mult": {}, "beta1": {"mode": "abs",
                                                                                              "bounds": [0.8, 0.95]},
                                                                  "beta2": {"mode": "abs", "bounds": [0.99, 0.9999]},
                                                                  "eps": {}}},
                                             "loss": {"enabled": False, "keys": {"entropy_loss_scale": {}}}}})
    assert [(m.name, m.enabled) for m in nested.mutations] == [("weight_decay", True), ("adam_beta1", True),
                                                               ("adam_beta2", True), ("adam_eps", True),
                                                               ("ent_coef", False)]
    for doc, message in [
        ({"actuators": {"opt": {"mutations": {"betas": {}}}}}, "Adam's betas are two actuators here"),
        ({"actuators": {"opt": {"mutations": {"lr_mult": {"mode": "abs"}}}}}, "lr_mult.mode: 'abs' (allowed: mult)"),
        ({"actuators": {"learning_rate": {}, "opt": {"mutations": {"lr": {}}}}}, "learning_rate is given twice"),
        ({"acceptance": {"horizon": "next_epoch"}}, "allowed: an integer >= 1, or next_val_epoch_end"),
        ({"objective": {"primary": "grad/norm"}}, "a training statistic, not a result"),
        ({"objective": {"primary": "shaped_return"}, "actuators": {"reward.progress": {}}},
         "'shaped_return' moves with the actuator reward.progress itself, so it cannot judge it (allowed: a metric "
         "no actuator moves: true_metric, success_rate, reference_return)"),
    ]:
        with pytest.raises(AutoMLError, match=None) as e:
            recipe_from_dict(doc)
        assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("trainer", ["torch", "sb3"])
def test_the_seed_recipe_with_ppo_names_runs_and_judges_each_mutation_at_the_next_evaluation(tmp_path, trainer):
    result = train_tuned(CART, env="cartpole", seed=0, recipe=str(PPO), run_dir=str(tmp_path), trainer=trainer, **RUN)
    mutations, segments, summary = _logs(tmp_path)
    assert (result.state, result.steps) == ("complete", 4096)
    assert mutations and {m["name"] for m in mutations} <= {"learning_rate", "vf_coef"}
    judged = [s for s in segments if s["event"] == "segment"]
    assert judged and all(len(s["post"]) == 1 and s["step"] - s["from_step"] == 512 for s in judged)
    assert mutations[0]["name"] != "learning_rate" or mutations[0]["factor"] == 0.95   # its prior centre first


ADAM = {"opt": {"mutations": {"weight_decay": {"mode": "abs", "bounds": [0.01, 0.1], "cooldown": 0},
                              "beta1": {"mode": "abs", "bounds": [0.5, 0.8], "cooldown": 0},
                              "eps": {"mode": "mult", "bounds": [100.0, 1000.0], "cooldown": 0}}},
        "loss": {"keys": {"vf_coef": {"mode": "mult", "bounds": [1.5, 2.0], "cooldown": 0},
                          "ent_coef": {"mode": "abs", "bounds": [0.05, 0.1], "cooldown": 0}}}}


@pytest.mark.parametrize("trainer, plain", TRAINERS)
def test_adam_and_loss_weight_mutations_are_rolled_back_bit_for_bit(tmp_path, trainer, plain):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"actuators": ADAM, "search": {"algorithm": "random"},
                                      "acceptance": {"epsilon": 1e9, "horizon": 1},   # nothing can pass
                                      "safety": {"max_global_reject_streak": 4}}))
    tuned = train_tuned(CART, env="cartpole", seed=0, recipe=str(recipe), run_dir=str(tmp_path / "run"),
                        trainer=trainer, **RUN)
    mutations, segments, summary = _logs(tmp_path / "run")
    assert len(mutations) == 4 and all(m["applied"] for m in mutations) and summary["blocked"] == "4 rejections in a row"
    assert [s["decision"] for s in segments if s["event"] == "segment"] == ["reject"] * 4
    reference = plain(CART, env="cartpole", seed=0, **RUN)
    assert tuned.evals == reference.evals and tuned.shaped_return == reference.shaped_return


def _trainers():
    from automl.train.result import to_setup
    from automl.train.sb3_train import SB3Trainer
    from automl.train.torch_ppo import Args
    from automl.train.torch_train import TorchTrainer

    setup = to_setup(CART)
    yield SB3Trainer(setup, "cartpole", seed=0, eval_episodes=4, device="cpu", reward_weights=None)
    yield TorchTrainer(Args.from_setup(setup), "cartpole", [0], eval_episodes=4, device="cpu", reward_weights=None)


def test_both_trainers_set_and_read_adam_and_loss_weights():
    new = {"weight_decay": 0.05, "adam_beta1": 0.8, "adam_beta2": 0.99, "adam_eps": 1e-6, "vf_coef": 0.7,
           "ent_coef": 0.02}
    for trainer in _trainers():
        before = trainer.values()
        assert {k: before[k] for k in ("weight_decay", "adam_beta1", "adam_beta2", "adam_eps", "vf_coef")} == \
            pytest.approx({"weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-5,
                           "vf_coef": 0.5})
        trainer.set_values(new, None)
        assert {k: trainer.values()[k] for k in new} == pytest.approx(new)
        trainer.close()


def test_stacked_adam_with_weight_decay_betas_and_eps_is_torch_adam():
    from automl.train.torch_policy import StackedAdam

    torch.manual_seed(0)
    p = torch.randn(1, 3, 2)
    q = p[0].clone().requires_grad_(True)
    ref = torch.optim.Adam([q], lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    mine = StackedAdam([p], betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    for _ in range(3):
        g = torch.randn(3, 2)
        q.grad = g.clone()
        ref.step()
        mine.step([g.unsqueeze(0)], 0.01, torch.ones(1))
    assert torch.allclose(p[0], q.detach(), atol=1e-6)


def test_grad_norm_is_the_root_mean_square_of_pre_clip_gradient_norms():
    from automl.train.tuning import GradNorm

    w = torch.tensor([3.0, 4.0], requires_grad=True)
    norm = GradNorm([w])
    assert norm.take() is None
    (w * 1.0).sum().backward()                                  # grad (1, 1): norm^2 2
    torch.autograd.grad((w * 2.0).sum(), [w])                   # the torch trainer's path: grad (2, 2): norm^2 8
    assert norm.take() == pytest.approx(math.sqrt((2 + 8) / 2)) and norm.take() is None


def test_a_flat_primary_is_judged_on_grad_norm_unless_the_actuator_scales_it():
    r = Recipe(backup_metrics=("grad/norm",), horizon=2, epsilon=0.01)
    flat, g_pre, g_post = [0.0, 0.0], [{"grad/norm": (2.0, None)}, {"grad/norm": (2.1, None)}], \
        [{"grad/norm": (1.0, None)}, {"grad/norm": (1.1, None)}]
    lr = judge_segment(flat, flat, r, [], g_pre, g_post, actuator="learning_rate")
    assert lr.accept and lr.metric == "grad/norm" and lr.gain == pytest.approx(1.0)    # min: lower is better
    vf = judge_segment(flat, flat, r, [], g_pre, g_post, actuator="vf_coef")
    assert not vf.accept and vf.metric == "true_metric"          # vf_coef scales the gradient by itself


def test_the_recipes_primary_metric_judges_the_mutations(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"objective": {"primary": "eval/reference_return"},
                                      "actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [2.0, 3.0]}}}},
                                      "search": {"algorithm": "random"}, "acceptance": {"horizon": 1}}))
    train_tuned(CART, env="cartpole", seed=0, recipe=str(recipe), run_dir=str(tmp_path / "run"), trainer="torch", **RUN)
    _, segments, _ = _logs(tmp_path / "run")
    assert segments and all(s["metric"] == "reference_return" for s in segments if s["event"] == "segment")
    with pytest.raises(AutoMLError, match="objective: success_rate: cartpole has no success"):
        recipe.write_text(yaml.safe_dump({"objective": {"primary": "success_rate"}}))
        train_tuned(CART, env="cartpole", seed=0, recipe=str(recipe), run_dir=str(tmp_path / "r2"), **RUN)


def test_tune_enable_clears_a_reject_streak():
    t = OnlineTuner(Recipe(mutations=(Mutation("learning_rate", cooldown=0),), algorithm="random", horizon=1,
                           epsilon=1e9, max_global_reject_streak=1))
    acts = [a["action"] for v in (0.5, 0.5, 0.5) for a in t.on_eval(0, 0.5, v, {"learning_rate": 1e-3})]
    assert acts == ["apply", "rollback"]
    t.on_eval(0, 0.5, 0.5, {"learning_rate": 1e-3})
    assert t.blocked == "1 rejections in a row"
    t.control(None, {}, enable=True)
    assert t.blocked is None and t.reject_streak == 0
    assert [a["action"] for a in t.on_eval(0, 0.5, 0.5, {"learning_rate": 1e-3})] == ["apply"]


def _train(tmp_path, run, *extra):
    config = tmp_path / "cart.yaml"
    config.write_text(yaml.safe_dump(CART))
    return main(["train", "--config", str(config), "--env", "cartpole", "--seed-list", "0", "--trial-steps", "4096",
                 "--eval-every", "512", "--device", "cpu", "--run-dir", str(tmp_path / run), *extra])


def test_the_tune_commands_enable_export_and_production_mode(tmp_path, capsys):
    assert _train(tmp_path, "run", "--tune", str(PPO), "--startup-trials", "3") == 0
    run = str(tmp_path / "run")
    for n in (1, 2):  # each enable is a new count: every job clears its reject streak at its next evaluation
        assert main(["tune", "enable", "--run-dir", run]) == 0
        assert json.loads((tmp_path / "run" / "tune.control.json").read_text())["enabled"] == n
    for name, read in (("r.json", json.loads), ("r.yaml", yaml.safe_load), ("r.yml", yaml.safe_load)):
        assert main(["tune", "export-recipe", "--run-dir", run, "--out", str(tmp_path / name)]) == 0
        doc = read((tmp_path / name).read_text())
        assert doc["search"]["startup_trials"] == 3 and doc["acceptance"]["horizon"] == 1
        assert recipe_from_dict(doc).mutations == load_recipe(PPO).mutations
    capsys.readouterr()
    assert main(["tune", "export-recipe", "--run-dir", run, "--out", str(tmp_path / "r.txt")]) == 2
    assert capsys.readouterr().err.strip().endswith("extension '.txt' (allowed: .json, .yaml, .yml)")
    # production: the frozen recipe replays run's mutations; every tune command is refused in one line
    assert _train(tmp_path, "prod", "--tune", str(PPO), "--tune-mode", "replay", "--tune-replay", run,
                  "--tune-production") == 0
    first, _, _ = _logs(tmp_path / "run")
    replayed, _, summary = _logs(tmp_path / "prod")
    assert summary["replayed"] == len(first) and [r["value"] for r in replayed if r["event"] == "replayed"
                                                    and r["action"] == "apply"] == [m["new"] for m in first]
    capsys.readouterr()
    for action in (["enable"], ["disable"], ["status"], ["set", "acceptance.epsilon=0.1"]):
        assert main(["tune", *action, "--run-dir", str(tmp_path / "prod")]) == 2
        err = capsys.readouterr().err
        assert "runs in production mode: every `automl tune` command is refused" in err and err.count("\n") == 1
    assert _train(tmp_path, "bad", "--tune", str(PPO), "--tune-production") == 2
    assert "--tune-production: --tune-mode active (allowed: replay" in capsys.readouterr().err


def test_a_tune_section_in_the_run_config_file_tunes_the_run(tmp_path):
    config = tmp_path / "cart.yaml"
    config.write_text(yaml.safe_dump({**CART, "tune": {"enabled": True, "mode": "observe", "recipe": str(PPO)}}))
    assert main(["train", "--config", str(config), "--env", "cartpole", "--seed-list", "0", "--trial-steps", "2048",
                 "--eval-every", "512", "--device", "cpu", "--run-dir", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "tune" / "seed_0" / "tune.summary.json").read_text())
    assert summary["mode"] == "observe" and summary["applied"] == 0
    config.write_text(yaml.safe_dump({**CART, "tune": {"mode": "active", "speed": 2}}))
    assert main(["train", "--config", str(config), "--env", "cartpole", "--run-dir", str(tmp_path / "r2")]) == 2


class EnablingKnob:
    """A user actuator whose first restore (the rollback of a rejected mutation) runs `automl tune enable` on
    the run, as a user would from another terminal once the reject streak has paused tuning."""

    def __init__(self, run_dir, enable: bool):
        self.run_dir, self.enable, self.value, self.applied = run_dir, enable, 0.5, 0

    def snapshot(self, env):
        return {"value": self.value}

    def validate(self, patch, env):
        return True

    def apply(self, patch, env):
        self.value, self.applied = patch["value"], self.applied + 1

    def restore(self, snapshot, env):
        self.value = snapshot["value"]
        if self.enable:
            from automl.cli.tune import command

            command("enable", str(self.run_dir))
            self.enable = False


@pytest.mark.parametrize("enable, applied", [(False, 1), (True, 2)])
def test_tune_enable_read_by_a_running_job_resumes_tuning_after_the_streak(tmp_path, enable, applied):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"actuators": {"knob": {"mode": "abs", "bounds": [1.0, 2.0], "cooldown": 0}},
                                      "search": {"algorithm": "random"}, "acceptance": {"epsilon": 1e9, "horizon": 1},
                                      "safety": {"max_global_reject_streak": 1}}))
    knob = EnablingKnob(tmp_path / "run", enable)
    train_tuned(CART, env="cartpole", seed=0, recipe=str(recipe), run_dir=str(tmp_path / "run"),
                actuators={"knob": knob}, trainer="torch", **RUN)
    mutations, _, summary = _logs(tmp_path / "run")
    assert knob.applied == len(mutations) == applied and summary["blocked"] == "1 rejections in a row"


def test_production_from_python_replays_an_earlier_run_and_refuses_tuning_modes(tmp_path, capsys):
    train_tuned(CART, env="cartpole", seed=0, recipe=str(PPO), run_dir=str(tmp_path / "run"), trainer="torch", **RUN)
    prod = train_tuned(CART, env="cartpole", seed=0, recipe=str(PPO), run_dir=str(tmp_path / "prod"), trainer="torch",
                       mode="replay", replay_from=str(tmp_path / "run"), production=True, **RUN)
    first, _, _ = _logs(tmp_path / "run")
    _, _, summary = _logs(tmp_path / "prod")
    assert prod.state == "complete" and summary["replayed"] == len(first) > 0
    assert json.loads((tmp_path / "prod" / "tune.control.json").read_text())["production"] is True
    with pytest.raises(AutoMLError, match="production: tune mode 'active' \\(allowed: replay"):
        train_tuned(CART, env="cartpole", seed=0, recipe=str(PPO), run_dir=str(tmp_path / "p2"), production=True, **RUN)

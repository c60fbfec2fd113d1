"""Run modes (automl/run/modes/): one object per --mode, found through one registry, with known plans."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from automl.core.errors import AutoMLError
from automl.core.record import Kind
from automl.run import modes
from automl.run.modes import MODES, Mode, Stage, mode_named
from automl.run.runconfig import RunConfig

MODES_DIR = Path(modes.__file__).parent


def test_every_mode_module_is_registered_once_in_the_order_help_lists_them():
    modules = {p.stem for p in MODES_DIR.glob("*.py")} - {"__init__", "base"}
    assert list(MODES) == ["stage", "joint", "hp", "reward", "pbt"] and set(MODES) == modules
    assert all(isinstance(m, Mode) and m.name == name for name, m in MODES.items())
    with pytest.raises(AutoMLError, match=r"^--mode: unknown value 'ladderx' \(allowed: stage, joint, hp, "
                                          r"reward, pbt\)$"):
        mode_named("ladderx")
    assert RunConfig(mode="joint").run_mode is MODES["joint"]


def _cfg(**kw):
    return RunConfig(**{"hp_trials": 2, "reward_generations": 2, "reward_population": 3, **kw})


@pytest.mark.parametrize("name,configs,stages", [
    ("stage", 10, [("hp", 1, 2), ("reward", 1, 3), ("hp", 2, 2), ("reward", 2, 3)]),
    ("joint", 10, [("joint", 1, 10)]),
    ("hp", 2, [("hp", 1, 2)]),
    ("reward", 6, [("reward", 1, 3), ("reward", 2, 3)]),
    ("pbt", 10, []),   # members are not configs of a search: no tuning stages
])
def test_each_mode_plans_its_known_configs_and_stages(name, configs, stages):
    cfg, mode = _cfg(mode=name), MODES[name]
    plan = SimpleNamespace(cycles=mode.cycles(cfg), hp_trials=cfg.hp_trials, population=3)
    assert mode.tuning_configs(cfg, True, 3) == configs
    assert mode.stages(plan, cfg, True) == [Stage(Kind(k), c, q) for k, c, q in stages]


def test_max_trials_caps_the_hp_configs_of_all_cycles_and_the_whole_joint_search():
    stage, joint = _cfg(max_trials=3), _cfg(mode="joint", max_trials=3)
    plan = SimpleNamespace(cycles=2, hp_trials=2, population=3)
    assert [tuple(s) for s in MODES["stage"].stages(plan, stage, True)] == [
        ("hp", 1, 2), ("reward", 1, 3), ("hp", 2, 1), ("reward", 2, 3)]
    assert MODES["stage"].tuning_configs(stage, True, 3) == 3 + 6
    assert MODES["joint"].stages(plan, joint, True) == [Stage(Kind.JOINT, 1, 3)]
    assert MODES["joint"].tuning_configs(joint, False, 3) == 3   # no reward terms: HP configs only
    assert MODES["stage"].stages(plan, stage, False) == [Stage(Kind.HP, 1, 2), Stage(Kind.HP, 2, 1)]


def test_the_modes_declarations_answer_what_the_run_asks():
    assert RunConfig(mode="joint", ladder="off").pruner_name == "hyperband" and RunConfig(mode="stage").pruner_name == "none"
    assert RunConfig(mode="joint", pruner="median", ladder="off").pruner_name == "median"
    assert RunConfig(mode="pbt", population=3).fingerprint()["pbt"]["population"] == 3
    assert RunConfig(mode="stage").fingerprint()["pbt"] is None
    assert [m.name for m in MODES.values() if m.needs_reward_terms] == ["stage", "joint", "reward"]
    assert [m.name for m in MODES.values() if not m.allows_selection] == ["pbt"]
    with pytest.raises(AutoMLError, match=r"^--metrics/--constraint: not with --mode pbt \(allowed: stage, "
                                          r"joint, hp, reward\)$"):
        RunConfig(mode="pbt", metrics="success_rate:max,train_time_s:min")


def test_a_new_mode_is_its_module_and_one_registry_entry(monkeypatch):
    """What adding a mode takes: a Mode subclass (its checks, plan and settings) and its name in MODES."""

    class Sweep(Mode):
        name = "sweep"
        reward_phases = False

        def check(self, cfg):
            if cfg.seeds > 2:
                raise AutoMLError("--seeds: at most 2 with --mode sweep")

        def fingerprint_settings(self, cfg):
            return {"sweep": {"hp_trials": cfg.hp_trials}}

    monkeypatch.setitem(MODES, "sweep", Sweep())
    cfg = RunConfig(mode="sweep", seeds=2, hp_trials=4, reward_generations=1)
    assert cfg.run_mode.name == "sweep" and cfg.fingerprint()["sweep"] == {"hp_trials": 4}
    assert cfg.run_mode.stages(SimpleNamespace(cycles=1, hp_trials=4, population=5), cfg, True) == [
        Stage(Kind.HP, 1, 4)]
    with pytest.raises(AutoMLError, match="at most 2 with --mode sweep"):
        RunConfig(mode="sweep", seeds=3)


def test_the_three_searches_are_search_owners(tmp_path):
    from automl.core.config import load_space
    from automl.search.hp import HPSearch
    from automl.search.joint import JointSearch
    from automl.search.owner import Outcome, Proposal, SearchOwner
    from automl.search.reward import RewardSearch

    spec = load_space(str(Path(__file__).parent / "data" / "tiny_cartpole.yaml"))
    terms = {"alive": {"default": 1.0, "low": 0.5, "high": 2.0}, "fixed": {"default": 0.3, "low": 0.3, "high": 0.3}}
    defaults = {"alive": 1.0, "fixed": 0.3}

    def study():
        return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    owners = [HPSearch(study(), spec, space_path=spec.path, method="random"),
              RewardSearch(study, terms, defaults), JointSearch(study(), spec, terms, defaults)]
    for owner in owners:
        assert isinstance(owner, SearchOwner)
        p = owner.ask()
        assert isinstance(p, Proposal) and p.ticket == (owner.study, owner.study.trials[-1]._trial_id)
        owner.tell(Outcome(p.ticket, 1.5, "complete"))
        assert owner.study.trials[-1].value == 1.5
    hp, reward, joint = (o.ask() for o in owners)
    assert hp.weights is None and set(hp.params) == {p.name for p in spec.params}     # the incumbent's weights
    assert reward.params is None and reward.weights["fixed"] == 0.3 and 0.5 <= reward.weights["alive"] <= 2.0
    assert joint.params is not None and set(joint.weights) == {"alive", "fixed"}


def test_a_modes_own_flags_reach_it_through_the_command_line(monkeypatch):
    """A mode declares its flags (automl.run.modes.Flag): `automl run` accepts them, RunConfig keeps their
    values (defaults filled in) in mode_options, the fingerprint holds them, and another mode refuses them."""
    from automl.cli.main import build_parser, run_config_from
    from automl.run.modes import Flag

    class Sweep(Mode):
        name = "sweep"
        flags = (Flag("--sweep-width", int, 4, "configs per sweep"), Flag("--sweep-order", str, "up", "up | down"))

        def check(self, cfg):
            if cfg.mode_options["sweep_order"] not in ("up", "down"):
                raise AutoMLError(f"--sweep-order: {cfg.mode_options['sweep_order']!r} (allowed: up, down)")

    monkeypatch.setitem(MODES, "sweep", Sweep())
    argv = ["run", "--mode", "sweep", "--sweep-width", "7"]
    cfg = run_config_from(build_parser().parse_args(argv), argv)
    assert cfg.mode_options == {"sweep_width": 7, "sweep_order": "up"}
    assert cfg.fingerprint()["sweep"] == {"sweep_width": 7, "sweep_order": "up"}
    assert "--mode sweep: configs per sweep (default 4)" in " ".join(
        build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    with pytest.raises(AutoMLError, match=r"^--sweep-order: 'sideways' \(allowed: up, down\)$"):
        RunConfig(mode="sweep", mode_options={"sweep_order": "sideways"})
    argv = ["run", "--mode", "stage", "--sweep-width", "7"]
    with pytest.raises(AutoMLError, match=r"^--sweep-width: not a flag of --mode stage \(allowed: none\)$"):
        run_config_from(build_parser().parse_args(argv), argv)
    assert RunConfig(mode="stage").mode_options == {} and "stage" not in RunConfig(mode="stage").fingerprint()

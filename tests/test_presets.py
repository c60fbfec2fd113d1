"""Presets: quick gives 6 configs, fine-tune narrows around the centre, full widens; snippets load; errors."""
import textwrap
from pathlib import Path

import pytest

from automl.search import presets, space
from automl.cli import validate
from automl.core.config import load_space, parse_space, to_ppo_setup
from automl.core.errors import AutoMLError

SEEDS = Path(__file__).resolve().parent / "data" / "seed_examples"
SPACES = [space.CONFIGS_DIR / "spaces" / "cartpole.yaml", space.CONFIGS_DIR / "spaces" / "ppo_default.yaml",
          SEEDS / "search_space.yaml"]
NAVIGATION = space.CONFIGS_DIR / "spaces" / "navigation.yaml"


@pytest.mark.parametrize("name", ["quick", "full", "fine-tune"])
def test_shipped_presets_load_with_run_defaults(name):
    preset = presets.load_preset(name)
    assert preset.name == name and preset.path.endswith(f"configs/presets/{name}.yaml")
    assert set(preset.run_defaults) <= set(presets.RUN_DEFAULT_KEYS)
    assert 0 < preset.run_defaults["trial_steps_fraction"] <= 1 and preset.run_defaults["hp_trials"] >= 1


@pytest.mark.parametrize("base", [*SPACES, NAVIGATION], ids=lambda p: p.stem)
def test_quick_is_six_configs_with_the_rest_at_priors(base):
    spec = load_space(base)
    quick = presets.apply_preset(spec, presets.load_preset("quick"))
    assert quick.names == ("learning_rate", "rollouts")
    assert [(c["learning_rate"], c["rollouts"]) for c in space.grid(quick)] == \
        [(lr, r) for lr in (1e-4, 3e-4, 1e-3) for r in (24, 48)]  # quick.yaml's choices, on every base
    for name, prior in space.prior_params(spec).items():
        if name not in quick.names:
            assert quick.fixed[name] == prior
    for config in space.grid(quick):  # every one of the 6 converts to SB3 kwargs
        to_ppo_setup(space.merged(quick, config))


def test_quick_has_priors_inside_its_choices():
    # quick.yaml names its own priors, so the warm start and the calibration run a config of
    # the grid (cartpole's rollouts prior 32 is not one of quick's choices [24, 48]).
    quick = presets.apply_preset(load_space(SPACES[0]), presets.load_preset("quick"))
    assert quick.param("learning_rate").prior == 3e-4 and quick.param("rollouts").prior == 24


def test_quick_on_a_base_without_priors_is_an_error(tmp_path):
    spec = parse_space({"search_space_id": "s", "searchable": {
        "gamma": {"type": "uniform", "low": 0.9, "high": 0.99}}}, "s.yaml")
    with pytest.raises(AutoMLError, match="quick.yaml: mode: 'only' fixes discount_factor at its prior"):
        presets.apply_preset(spec, presets.load_preset("quick"))


def test_fine_tune_narrows_around_the_priors():
    spec = load_space(SPACES[1])  # ppo_default: lr loguniform [1e-5, 3e-3] prior 3e-4
    tuned = presets.apply_preset(spec, presets.load_preset("fine-tune"))
    lr = tuned.param("learning_rate")
    assert (lr.low, lr.high, lr.prior) == (pytest.approx(1e-4), pytest.approx(9e-4), 3e-4)  # /3, x3
    assert tuned.param("rollouts").choices == (128, 256, 512)  # neighbours of 256
    assert tuned.param("policy_hidden_layer_sizes").choices == ((64, 64), (128, 128))  # prior is the first
    assert tuned.fixed == spec.fixed


def test_fine_tune_narrows_around_a_best_config_in_either_naming_style():
    spec = load_space(SPACES[1])
    best = {"learning_rate": 2e-3, "n_steps": 2048, "gamma": 0.95, "lambda_param": 0.9, "reward.progress": 1.0}
    tuned = presets.apply_preset(spec, presets.load_preset("fine-tune"), best_params=best)
    lr = tuned.param("learning_rate")
    assert (lr.low, lr.high, lr.prior) == (pytest.approx(2e-3 / 3), 3e-3, 2e-3)  # clipped to the base high
    assert tuned.param("rollouts").choices == (1024, 2048) and tuned.param("rollouts").prior == 2048
    assert tuned.param("discount_factor").choices == (0.95, 0.98)
    assert tuned.param("lambda_param").choices == (0.8, 0.9, 0.92)
    assert space.prior_params(tuned)["learning_rate"] == 2e-3  # the warm start is the best config


def test_fine_tune_linear_and_int_ranges(tmp_path):
    spec = parse_space({"search_space_id": "s", "searchable": {
        "ent_coef": {"type": "uniform", "low": 0.0, "high": 0.1, "prior": 0.01},
        "n_epochs": {"type": "int", "low": 2, "high": 22, "step": 2, "prior": 10}}}, "s.yaml")
    tuned = presets.apply_preset(spec, presets.load_preset("fine-tune"))
    ent, epochs = tuned.param("entropy_loss_scale"), tuned.param("learning_epochs")
    assert (ent.low, ent.high) == (0.0, pytest.approx(0.035))  # 0.01 +/- 0.025, clipped at 0
    assert (epochs.low, epochs.high, epochs.prior) == (4, 16, 10)  # 10 +/- 5 widened to the step of 2


def test_full_searches_all_ppo_params_with_base_priors():
    spec = load_space(SPACES[0])
    full = presets.apply_preset(spec, presets.load_preset("full"))
    expected = {"learning_rate", "discount_factor", "lambda_param", "ratio_clip", "entropy_loss_scale",
                "value_loss_scale", "grad_norm_clip", "learning_epochs", "rollouts", "mini_batches",
                "policy_hidden_layer_sizes", "learning_rate_schedule"}
    assert expected <= set(full.names)
    assert "num_envs" in full.names  # not in the preset: keeps the base range
    assert full.param("learning_rate").low == 1e-5 and full.param("learning_rate").prior == 1e-3
    assert not set(full.names) & set(full.fixed)
    assert not space.violated_constraints(full, space.prior_params(full))


def test_seed_snippets_load_as_presets():
    base = load_space(SEEDS / "search_space.yaml")
    quick = presets.load_preset(SEEDS / "preset_quick.yaml")
    assert quick.mode == "override" and [p.name for p in quick.searchable] == ["learning_rate", "rollouts"]
    applied = presets.apply_preset(base, quick)
    assert applied.param("rollouts").choices == (24, 48) and applied.param("rollouts").prior == 24
    assert applied.param("learning_rate").choices == (1e-4, 3e-4, 1e-3)
    with pytest.raises(AutoMLError, match=r"preset_full.yaml: file: empty \(only comments or null\) .*"
                                          r"\{\} changes nothing\)$"):  # comments only: refused (issue 11.2)
        presets.load_preset(SEEDS / "preset_full.yaml")
    same = presets.apply_preset(base, presets.parse_preset({}, "full"))  # `{}` is the preset that changes nothing
    assert (same.params, same.fixed, same.constraints) == (base.params, base.fixed, base.constraints)
    fine = presets.apply_preset(base, presets.load_preset(SEEDS / "preset_fine_tune.yaml"))
    lr = fine.param("learning_rate")
    assert (lr.type, lr.low, lr.high, lr.prior) == ("loguniform", 1e-4, 5e-4, 3e-4)


def test_preset_fixed_and_exclusive_partner(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("fixed: {batch_size: 256, n_epochs: 4}\nconstraints: ['learning_rate > 1e-3']\n")
    spec = load_space(SPACES[0])
    applied = presets.apply_preset(spec, presets.load_preset(path))
    assert applied.fixed["batch_size"] == 256 and "mini_batches" not in applied.names  # its partner goes
    assert "learning_epochs" not in applied.names and applied.constraints[-1] == "learning_rate > 1e-3"


BAD_PRESETS = {
    "unknown mode": ("mode: widen\n", ["mode: unknown 'widen'", "allowed: override, only, narrow"]),
    "narrow without mode": ("narrow: {log_factor: 2}\n", ["narrow: needs mode: narrow"]),
    "log factor <= 1": ("mode: narrow\nnarrow: {log_factor: 1}\n", ["narrow.log_factor", "(1, inf]"]),
    "fraction 0": ("run_defaults: {trial_steps_fraction: 0}\n", ["trial_steps_fraction", "(0, 1]"]),
    "bad method": ("run_defaults: {search_method: bayes}\n", ["search_method: unknown 'bayes'"]),
    "bad run key": ("run_defaults: {trials: 3}\n", ["unknown key 'trials'"]),
    "mixed keys": ("learning_rate: {type: uniform, low: 0.1, high: 0.2}\nmood: only\n",
                   ["unknown key 'mood'", "did you mean 'mode'"]),
    "space file": ("search_space_id: s\n", ["this is a search space, not a preset"]),
    "not mapping": ("[1, 2]\n", ["top level: list is not a mapping"]),
    "empty file": ("", ["file: empty (allowed: a preset mapping with keys preset"]),
    "blank file": ("\n  \n", ["file: empty (allowed: a preset mapping"]),
    "comment only": ("# changes nothing\n", ["file: empty (only comments or null) (allowed: a preset mapping"]),
    "bad param": ("searchable: {rollouts: {type: choice, values: []}}\n", ["searchable.rollouts.values"]),
    "bad constraint": ("constraints: ['open(1)']\n", ["constraints[0]", "Call"]),
}


@pytest.mark.parametrize("case", list(BAD_PRESETS))
def test_bad_presets(tmp_path, case):
    text, needles = BAD_PRESETS[case]
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(AutoMLError) as info:
        presets.load_preset(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_unknown_preset_name_suggests():
    with pytest.raises(AutoMLError, match="--preset: unknown preset 'quik'; did you mean 'quick'"):
        presets.load_preset("quik")


def test_preset_constraint_on_missing_name_fails_on_apply(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("constraints: ['target_kl > 0.1']\n")
    with pytest.raises(AutoMLError, match="names 'target_kl', which is neither fixed nor searchable"):
        presets.apply_preset(load_space(SPACES[0]), presets.load_preset(path))


def test_empty_files_are_refused_by_every_yaml_reader_but_braces_are_the_empty_preset(tmp_path):
    from automl.run.inputs import load_reward_file
    from automl.cli.train import load_train_config

    path = tmp_path / "e.yaml"
    for text in ("", "   \n", "# only a comment\n"):
        path.write_text(text)
        for read in (validate.summary, presets.load_preset, load_space, load_reward_file, load_train_config):
            with pytest.raises(AutoMLError, match=rf"^{path}: file: empty .*\(allowed: a [^\n]*\)$"):
                read(str(path))
    path.write_text("{}\n")  # an explicit empty mapping: the preset that changes nothing
    assert validate.summary(path).splitlines()[:2] == [f"{path}: preset e (mode override)", "searchable (0):"]
    assert presets.apply_preset(load_space(SPACES[0]), presets.load_preset(path)).names == load_space(SPACES[0]).names


def test_validate_summaries(tmp_path):
    text = validate.summary(SPACES[0])
    assert "search space cartpole_batched_v1" in text and "learning_rate" in text and "prior 0.001" in text
    assert "grid: 17496 configs (19683 combinations, 2187 rejected by constraints)" in text  # 3^9, 3^9/9 rejected
    assert "prior config -> PPO n_steps=32 batch_size=512" in text
    assert "grid: not enumerable" in validate.summary(SEEDS / "search_space.yaml")
    assert "preset quick (mode only)" in validate.summary(space.CONFIGS_DIR / "presets" / "quick.yaml")
    assert "read as a preset" in validate.summary(SEEDS / "preset_fine_tune.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        search_space_id: s
        fixed: {num_envs: 10}
        searchable:
          n_steps: {type: choice, values: [16, 24], prior: 24}
          mini_batches: {type: choice, values: [3, 4], prior: 4}
    """))
    text = validate.summary(bad)
    # 16*10=160 and 24*10=240: only 160 % 3 != 0
    assert "warning: 1 of 4 rollouts x num_envs x mini_batches combinations do not divide" in text
    bad.write_text(bad.read_text().replace("prior: 4", "prior: 3").replace("prior: 24", "prior: 16"))
    with pytest.raises(AutoMLError, match="priors: mini_batches: 3 does not divide"):
        validate.summary(bad)

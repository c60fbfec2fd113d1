"""space.py: Optuna round trips, grid counts computed by hand, and the one conversion to SB3 kwargs."""
import ast
import importlib.util
import textwrap
from pathlib import Path

import gymnasium
import optuna
import pytest
import stable_baselines3

from automl.search import space
from automl.core.config import ALIASES, SB3_DEFAULTS, load_space, parse_space, to_ppo_setup
from automl.core.errors import AutoMLError

SEEDS = Path(__file__).resolve().parent / "data" / "seed_examples"
GRID_SPACE = {
    "search_space_id": "grid_by_hand",
    "fixed": {"num_envs": 4},
    "searchable": {
        "rollouts": {"type": "choice", "values": [16, 32, 64]},
        "learning_epochs": {"type": "int", "low": 4, "high": 10, "step": 3},
        "learning_rate": {"type": "loguniform", "low": "1e-4", "high": "1e-2", "grid_points": 3},
        "net_arch": {"type": "categorical", "choices": [[64], [64, 64]]},
    },
    "constraints": ["learning_rate > 5e-4 and learning_epochs > 8", "n_steps * n_epochs >= 640"],
}


@pytest.fixture
def seed_spec():
    return load_space(SEEDS / "search_space.yaml")


def test_distributions_match_the_spec(seed_spec):
    dists = space.distributions(seed_spec)
    assert dists["learning_rate"] == optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    assert dists["rollouts"] == optuna.distributions.CategoricalDistribution([16, 24, 32, 48])
    assert dists["policy_hidden_layer_sizes"].choices == ("128-64", "256-128-64", "512-256-128")


def test_prior_round_trip_through_fixed_trial(seed_spec):
    prior = space.prior_params(seed_spec)
    assert prior == {"learning_rate": 3e-4, "policy_hidden_layer_sizes": [256, 128, 64], "rollouts": 24,
                     "learning_epochs": 5, "entropy_loss_scale": 1e-3}
    encoded = space.encode_params(seed_spec, prior)
    assert encoded["policy_hidden_layer_sizes"] == "256-128-64"
    assert space.suggest(optuna.trial.FixedTrial(encoded), seed_spec) == prior
    assert space.decode_params(seed_spec, {**encoded, "reward.collision": -2.0}) == {**prior, "reward.collision": -2.0}


def test_prior_is_the_first_trial_of_a_study(seed_spec):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.encode_params(seed_spec, space.prior_params(seed_spec)))
    seen = []
    study.optimize(lambda t: seen.append(space.suggest(t, seed_spec)) or 0.0, n_trials=3)
    assert seen[0] == space.prior_params(seed_spec) and seen[1] != seen[0]


def test_encode_params_rejects_what_the_space_cannot_take(seed_spec):
    assert space.encode_params(seed_spec, {"n_steps": 16, "seed": 42}) == {"rollouts": 16}  # fixed keys dropped
    with pytest.raises(AutoMLError, match="params.rollouts: 20 is not one of the choices"):
        space.encode_params(seed_spec, {"rollouts": 20})
    with pytest.raises(AutoMLError, match=r"outside the range \(allowed: \[1e-05, 0.01\]\)"):
        space.encode_params(seed_spec, {"learning_rate": 0.5})
    with pytest.raises(AutoMLError, match="params.gamma: not a parameter of this space"):
        space.encode_params(seed_spec, {"gamma": 0.9})


def test_grid_size_is_product_minus_rejected():
    spec = parse_space(GRID_SPACE, "grid.yaml")
    assert space.grid_values(spec, spec.param("learning_epochs")) == [4, 7, 10]
    assert space.grid_values(spec, spec.param("learning_rate")) == [1e-4, 1e-3, 1e-2]
    assert space.grid_size(spec) == 3 * 3 * 3 * 2  # 54
    # constraint 1 rejects lr in {1e-3, 1e-2} x epochs 10: 2 * 1 * 3 rollouts * 2 nets = 12
    # constraint 2 rejects rollouts 64 x epochs 10 (640): 1 * 1 * 3 lrs * 2 nets = 6
    # both: rollouts 64, epochs 10, lr in {1e-3, 1e-2}: 2 * 2 nets = 4  ->  54 - (12 + 6 - 4) = 40
    combos = space.grid(spec)
    assert len(combos) == 40
    assert {"rollouts": 16, "learning_epochs": 4, "learning_rate": 1e-4, "policy_hidden_layer_sizes": [64]} in combos
    assert all(not space.violated_constraints(spec, c) for c in combos)


def test_grid_sampler_space_is_encoded():
    spec = parse_space(GRID_SPACE, "grid.yaml")
    assert space.grid_search_space(spec)["policy_hidden_layer_sizes"] == ["64", "64-64"]


def test_continuous_param_without_grid_values_says_how_to_fix(seed_spec):
    with pytest.raises(AutoMLError) as info:
        space.grid(seed_spec)
    assert "searchable.learning_rate" in str(info.value) and "values" in str(info.value)
    assert "grid_points" in str(info.value)


def test_violated_constraints_merge_fixed_and_accept_aliases(seed_spec):
    # ratio_clip is fixed at 0.2, so constraint 2 never fires; constraint 1 needs epochs > 8 (not in choices)
    config = {**space.prior_params(seed_spec), "learning_rate": 1e-3, "ent_coef": 0.09, "n_epochs": 8}
    assert space.violated_constraints(seed_spec, config) == []
    assert space.violated_constraints(seed_spec, {**config, "n_epochs": 9}) == [seed_spec.constraints[0]]
    with pytest.raises(AutoMLError, match="constraints\\[0\\].*'learning_epochs' has no value"):
        space.violated_constraints(seed_spec, {"learning_rate": 1e-3})  # a partial config cannot be judged
    spec = parse_space({**GRID_SPACE}, "g.yaml")
    assert space.violated_constraints(spec, {"n_steps": 64, "n_epochs": 10, "learning_rate": 1e-4}) == \
        ["n_steps * n_epochs >= 640"]


def test_cartpole_priors_convert_to_the_known_solving_config():
    spec = load_space(space.default_space_path("cartpole"))
    setup = to_ppo_setup(space.merged(spec, space.prior_params(spec)))
    kw = setup.ppo_kwargs
    assert (setup.num_envs, kw["n_steps"], kw["batch_size"], kw["n_epochs"]) == (64, 32, 512, 10)
    assert (kw["learning_rate"], kw["gamma"], kw["gae_lambda"], kw["ent_coef"]) == (1e-3, 0.98, 0.8, 0.0)
    assert kw["policy_kwargs"] == {"net_arch": {"pi": [64, 64], "vf": [64, 64]}}
    assert 100_000 <= setup.n_timesteps <= 300_000 and setup.normalize is False


@pytest.mark.parametrize("task, file", [("cartpole", "cartpole.yaml"), ("navigation", "navigation.yaml"),
                                        ("NAVIGATION", "navigation.yaml"), ("CartPole-v1", "ppo_default.yaml"),
                                        ("Pendulum-v1", "ppo_default.yaml")])
def test_default_space_path(task, file):
    path = space.default_space_path(task)
    assert path.name == file and path.parent == Path(__file__).resolve().parents[1] / "configs" / "spaces"


# the shipped spaces at their priors: (searchable count, num_envs, rollouts, mini_batches, learning_rate)
SHIPPED = {"cartpole": (9, 64, 32, 4, 1e-3), "ppo_default": (10, 8, 256, 8, 3e-4), "navigation": (8, 512, 32, 8, 3e-4)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_default_spaces_are_valid(name):
    path = space.CONFIGS_DIR / "spaces" / f"{name}.yaml"
    spec = load_space(path)
    count, num_envs, rollouts, mini_batches, lr = SHIPPED[name]
    priors = space.prior_params(spec)
    assert len(spec.params) == count and set(priors) == set(spec.names)
    assert not space.violated_constraints(spec, priors)
    setup = to_ppo_setup(space.merged(spec, priors), path=str(path))
    assert (setup.num_envs, setup.ppo_kwargs["n_steps"], setup.ppo_kwargs["learning_rate"]) == (num_envs, rollouts, lr)
    assert setup.ppo_kwargs["batch_size"] == num_envs * rollouts // mini_batches  # the rollout cut in mini_batches


# the shipped spaces' network choices, exactly (seed 001's Small/Medium/Large/Deep on navigation)
ARCHITECTURES = {"cartpole": ((32, 32), (64, 64), (128, 128)),
                 "ppo_default": ((64, 64), (128, 128), (256, 256), (256, 256, 256)),
                 "navigation": ((128, 64), (256, 128, 64), (512, 256, 128), (256, 256, 256))}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shipped_spaces_network_choices(name):
    spec = load_space(space.CONFIGS_DIR / "spaces" / f"{name}.yaml")
    assert spec.param("policy_hidden_layer_sizes").choices == ARCHITECTURES[name]


def test_to_ppo_setup_defaults_are_sb3_defaults():
    setup = to_ppo_setup({})
    assert setup.ppo_kwargs == SB3_DEFAULTS and setup.num_envs == 8
    assert (setup.n_timesteps, setup.normalize, setup.learning_rate_schedule, setup.seed) == \
        (None, False, "constant", None)


def test_sb3_defaults_table_matches_ppo_signature():
    # read PPO.__init__'s defaults from the installed source without importing torch
    origin = Path(importlib.util.find_spec("stable_baselines3").origin).parent / "ppo" / "ppo.py"
    tree = ast.parse(origin.read_text())
    init = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args.args[-len(init.args.defaults):]
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(args, init.args.defaults)
                if isinstance(d, ast.Constant)}
    for key, value in SB3_DEFAULTS.items():
        assert defaults[key] == value, key


# one value per SB3 alias, and what PPO(...) must receive
ALIAS_VALUES = {"gamma": 0.97, "gae_lambda": 0.9, "clip_range": 0.3, "clip_range_vf": 0.4, "ent_coef": 0.01,
                "vf_coef": 0.7, "max_grad_norm": 0.8, "n_epochs": 7, "n_steps": 128, "net_arch": [32, 16]}


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_round_trip(alias):
    assert alias in ALIAS_VALUES  # every alias has a case here
    value, canonical = ALIAS_VALUES[alias], ALIASES[alias]
    for key in (alias, canonical):
        kw = to_ppo_setup({key: value}).ppo_kwargs
        got = kw["policy_kwargs"]["net_arch"]["pi"] if alias == "net_arch" else kw[alias]
        assert got == value


def test_mini_batches_derive_batch_size_exactly():
    kw = to_ppo_setup({"rollouts": 32, "num_envs": 64, "mini_batches": 4}).ppo_kwargs
    assert kw["batch_size"] == 512
    with pytest.raises(AutoMLError) as info:
        to_ppo_setup({"rollouts": 24, "num_envs": 10, "mini_batches": 7}, path="best.yaml")
    message = str(info.value)
    assert message.startswith("best.yaml: mini_batches: 7 does not divide") and "24*10 = 240" in message
    assert "e.g. [5, 6, 8]" in message
    with pytest.raises(AutoMLError, match="batches of 1 sample"):
        to_ppo_setup({"rollouts": 2, "num_envs": 2, "mini_batches": 4})
    with pytest.raises(AutoMLError, match="given together with mini_batches"):
        to_ppo_setup({"mini_batches": 4, "batch_size": 64})


def test_to_ppo_setup_validates_values_and_names():
    with pytest.raises(AutoMLError, match=r"p: discount_factor: 1.2 is out of range .*\(0, 1\]"):
        to_ppo_setup({"gamma": 1.2}, path="p")
    with pytest.raises(AutoMLError, match="unknown parameter 'learnig_rate'.*did you mean 'learning_rate'"):
        to_ppo_setup({"learnig_rate": 1e-3})
    with pytest.raises(AutoMLError, match="given twice"):
        to_ppo_setup({"gamma": 0.9, "discount_factor": 0.9})
    setup = to_ppo_setup({"learning_rate": "1e-3", "normalize": True, "learning_rate_schedule": "linear",
                                "seed": 3, "n_timesteps": "1e5", "target_kl": 0.02, "reward.progress": 1.0})
    assert setup.ppo_kwargs["learning_rate"] == 1e-3 and setup.ppo_kwargs["target_kl"] == 0.02
    assert (setup.normalize, setup.learning_rate_schedule, setup.seed, setup.n_timesteps) == (True, "linear", 3, 100000)
    assert "seed" not in setup.ppo_kwargs  # the job's seed is chosen per run, not per config


def test_sb3_accepts_the_converted_kwargs():
    """Known answer from SB3 itself: PPO(...) takes the kwargs and ends up with the derived batch size."""
    from stable_baselines3.common.env_util import make_vec_env
    setup = to_ppo_setup({"n_steps": 16, "num_envs": 2, "mini_batches": 4, "net_arch": [8, 8], "gamma": 0.9})
    env = make_vec_env(lambda: gymnasium.make("CartPole-v1"), n_envs=setup.num_envs)
    model = stable_baselines3.PPO("MlpPolicy", env, device="cpu", **setup.ppo_kwargs)
    assert (model.batch_size, model.n_steps, model.gamma) == (8, 16, 0.9)
    assert [m.out_features for m in model.policy.mlp_extractor.policy_net if hasattr(m, "out_features")] == [8, 8]


def test_load_space_reads_yaml_written_like_the_seed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""
        search_space_id: "x"
        searchable:
          learning_rate: {type: "loguniform", low: 1e-5, high: 1e-2, prior: 3e-4, values: [1e-5, 1e-4]}
    """))
    spec = load_space(path)
    assert space.grid_values(spec, spec.param("learning_rate")) == [1e-5, 1e-4]

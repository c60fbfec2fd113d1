"""Search-space YAML schema: the seed's examples load as written, and every malformed input is one clear line."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from automl.core import config
from automl.core.config import load_space, load_yaml
from automl.core.errors import AutoMLError

ROOT = Path(__file__).resolve().parent.parent
SEEDS = Path(__file__).resolve().parent / "data" / "seed_examples"


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_seed_space_loads_verbatim():
    spec = load_space(SEEDS / "search_space.yaml")
    assert spec.search_space_id == "ppo_navigation_v1"
    assert spec.fixed == {"seed": 42, "num_envs": 2048, "grad_norm_clip": 1.0, "ratio_clip": 0.2, "value_clip": 0.2}
    assert spec.names == ("learning_rate", "policy_hidden_layer_sizes", "rollouts", "learning_epochs",
                          "entropy_loss_scale")
    lr = spec.param("learning_rate")
    # "1e-5" is a str to PyYAML; here it is the number
    assert (lr.type, lr.low, lr.high, lr.prior, lr.log) == ("loguniform", 1e-5, 1e-2, 3e-4, True)
    layers = spec.param("policy_hidden_layer_sizes")
    assert layers.choices == ((128, 64), (256, 128, 64), (512, 256, 128)) and layers.prior == (256, 128, 64)
    assert spec.param("rollouts").type == "categorical"  # "choice" is categorical
    assert len(spec.constraints) == 2


def test_seed_analysis_example_is_valid_yaml():
    data = load_yaml(SEEDS / "hyperparameter_importance.yaml")
    assert data["importance_ranking"][0]["parameter"] == "learning_rate"
    assert data["top_5_configs"][0]["config_id"] == "config_023"


def test_space_without_id_points_to_presets():
    with pytest.raises(AutoMLError, match="search_space_id: missing .*preset"):
        load_space(SEEDS / "preset_quick.yaml")


def test_sb3_names_normalize_to_canonical(tmp_path):
    path = write(tmp_path, """
        search_space_id: s
        fixed: {gamma: 0.99, clip_range_vf: null, max_grad_norm: 0.5, n_timesteps: 1e5}
        searchable:
          n_steps: {type: int, low: 8, high: 64, step: 8, prior: 32}
          net_arch: {type: categorical, choices: [[64, 64], [32]]}
          ent_coef: {type: uniform, low: 0, high: 0.01}
          gae_lambda: {type: uniform, low: 0.8, high: 1.0, log: true}
        constraints: ["n_steps * gamma > 30 and ent_coef > 0.005"]
    """)
    spec = load_space(path)
    assert spec.fixed == {"discount_factor": 0.99, "value_clip": None, "grad_norm_clip": 0.5, "n_timesteps": 100000}
    assert spec.names == ("rollouts", "policy_hidden_layer_sizes", "entropy_loss_scale", "lambda_param")
    assert spec.param("lambda_param").type == "loguniform"  # uniform + log: true
    assert spec.param("rollouts").step == 8


def test_extra_parameters_accepted(tmp_path):
    path = write(tmp_path, """
        search_space_id: s
        fixed: {seed: 1, num_envs: 16, n_timesteps: 2e5, target_kl: 0.02}
        searchable:
          normalize: {type: choice, values: [true, false], prior: false}
          learning_rate_schedule: {type: choice, values: [constant, linear]}
          target_kl: {type: choice, values: [null, 0.01]}
    """)
    with pytest.raises(AutoMLError, match="fixed.target_kl: also searchable"):
        load_space(path)
    path.write_text(path.read_text().replace(", target_kl: 0.02", ""))
    spec = load_space(path)
    assert spec.param("normalize").choices == (True, False)
    assert spec.param("target_kl").choices == (None, 0.01)


def test_config_imports_neither_torch_nor_optuna():
    code = "import sys, automl.core.config; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]


BASE = "search_space_id: s\n"
# (file text, substrings the one-line message must contain)
BAD = {
    "unparsable": ("search_space_id: s\nsearchable: {a: [1, 2}\n", ["invalid YAML", "line 2"]),
    "duplicate key": ("search_space_id: s\nsearch_space_id: t\n", ["appears twice"]),
    "top not mapping": ("- 1\n- 2\n", ["top level", "not a mapping", "allowed:"]),
    "top a string": ("learning_rate\n", ["top level: str is not a mapping", "allowed: a search-space mapping"]),
    "empty file": ("", ["file: empty (allowed: a search-space mapping with keys search_space_id"]),
    "blank file": (" \n\t\n\n", ["file: empty (allowed: a search-space mapping with keys search_space_id"]),
    "comment only": ("# my space\n# todo\n", ["file: empty (only comments or null) (allowed: a search-space"]),
    "null": ("null\n", ["file: empty (only comments or null)"]),
    "unknown top key": (BASE + "serchable: {}\n", ["unknown key 'serchable'", "did you mean 'searchable'"]),
    "unknown type": (BASE + "searchable: {learning_rate: {type: logunifrom, low: 1, high: 2}}\n",
                     ["learning_rate.type", "unknown type 'logunifrom'", "did you mean 'loguniform'", "allowed:"]),
    "missing type": (BASE + "searchable: {learning_rate: {low: 1, high: 2}}\n", ["missing type"]),
    "low >= high": (BASE + "searchable: {learning_rate: {type: uniform, low: 0.1, high: 0.01}}\n",
                    ["searchable.learning_rate", "low (0.1) must be < high (0.01)"]),
    "loguniform low 0": (BASE + "searchable: {entropy_loss_scale: {type: loguniform, low: 0, high: 0.1}}\n",
                         ["entropy_loss_scale.low", "log scale needs low > 0"]),
    "empty choices": (BASE + "searchable: {rollouts: {type: choice, values: []}}\n",
                      ["rollouts.values", "not a non-empty list"]),
    "prior outside range": (BASE + "searchable: {learning_rate: {type: loguniform, low: 1e-5, high: 1e-3, "
                                   "prior: 1e-2}}\n", ["learning_rate.prior", "outside the range", "[1e-05, 0.001]"]),
    "prior not a choice": (BASE + "searchable: {rollouts: {type: choice, values: [16, 32], prior: 24}}\n",
                           ["rollouts.prior", "not one of the choices", "16, 32"]),
    "unknown param": (BASE + "searchable: {learning_rat: {type: uniform, low: 0.1, high: 0.2}}\n",
                      ["unknown parameter 'learning_rat'", "did you mean 'learning_rate'"]),
    "constraint unknown name": (BASE + "fixed: {ratio_clip: 0.2}\nconstraints: ['ratio_clip > 0.1 and epochs > 3']\n",
                                ["constraints[0]", "'epochs'", "ratio_clip > 0.1 and epochs > 3", "allowed: ratio_clip"]),
    "constraint call": (BASE + "fixed: {ratio_clip: 0.2}\nconstraints: [\"__import__('os')\"]\n",
                        ["constraints[0]", "Call", "allowed:"]),
    "constraint attribute": (BASE + "fixed: {ratio_clip: 0.2}\nconstraints: ['ratio_clip.real > 1']\n",
                             ["Attribute"]),
    "constraint string": (BASE + "fixed: {ratio_clip: 0.2}\nconstraints: [\"ratio_clip == 'x'\"]\n",
                          ["constant 'x'"]),
    "constraint list param": (BASE + "fixed: {net_arch: [64, 64]}\nconstraints: ['net_arch > 3']\n",
                              ["'net_arch'", "not a number"]),
    "fixed also searchable": (BASE + "fixed: {gamma: 0.9}\nsearchable: {discount_factor: {type: choice, values: "
                                     "[0.9, 0.99]}}\n", ["fixed.discount_factor: also searchable"]),
    "two naming styles": (BASE + "fixed: {gamma: 0.9, discount_factor: 0.99}\n",
                          ["'discount_factor' is given twice", "'gamma'"]),
    "mini_batches with batch_size": (BASE + "fixed: {mini_batches: 4, batch_size: 64}\n",
                                     ["batch_size: given together with mini_batches"]),
    "gamma above 1": (BASE + "fixed: {gamma: 1.5}\n", ["fixed.discount_factor", "out of range", "(0, 1]"]),
    "lambda range": (BASE + "searchable: {lambda_param: {type: uniform, low: 0.0, high: 1.0}}\n",
                     ["lambda_param.low", "(0, 1]"]),
    "learning rate <= 0": (BASE + "fixed: {learning_rate: -1e-3}\n", ["learning_rate", "a number > 0"]),
    "clip <= 0": (BASE + "fixed: {clip_range: 0}\n", ["ratio_clip", "a number > 0"]),
    "int param as float type": (BASE + "searchable: {n_steps: {type: uniform, low: 8, high: 64}}\n",
                                ["rollouts.type", "allowed: int, categorical"]),
    "not a number": (BASE + "fixed: {learning_rate: fast}\n", ["'fast' is not a number"]),
    "bool as number": (BASE + "fixed: {num_envs: true}\n", ["True is not a number"]),
    "layers not list": (BASE + "fixed: {policy_hidden_layer_sizes: 64}\n", ["not a list"]),
    "bad schedule": (BASE + "fixed: {learning_rate_schedule: cosine}\n", ["constant or linear"]),
    "normalize not bool": (BASE + "fixed: {normalize: 1}\n", ["not a boolean"]),
    "unknown param key": (BASE + "searchable: {rollouts: {type: int, low: 8, high: 64, prior: 16, steps: 8}}\n",
                          ["unknown key 'steps'", "did you mean 'step'"]),
    "step not dividing": (BASE + "searchable: {rollouts: {type: int, low: 8, high: 60, step: 8}}\n",
                          ["not a multiple of 8"]),
    "values and choices": (BASE + "searchable: {rollouts: {type: choice, values: [1], choices: [2]}}\n",
                           ["both values and choices"]),
    "duplicate choices": (BASE + "searchable: {rollouts: {type: choice, values: [16, 16]}}\n", ["duplicates"]),
    "searchable not mapping": (BASE + "searchable: [learning_rate]\n", ["searchable: list is not a mapping"]),
    "id not string": ("search_space_id: [a]\n", ["search_space_id", "not a non-empty string"]),
    "grid_points < 2": (BASE + "searchable: {learning_rate: {type: loguniform, low: 1e-5, high: 1e-3, "
                               "grid_points: 1}}\n", ["grid_points: 1"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_file_and_key(tmp_path, case):
    text, expected = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AutoMLError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for part in expected:
        assert part in message, (part, message)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AutoMLError, match="nope.yaml: file: does not exist"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(AutoMLError, match="file: is a directory"):
        load_space(tmp_path)


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("search_space_id: caf\xe9\n".encode("latin-1"))
    with pytest.raises(AutoMLError, match=r"not UTF-8 \(byte 0xe9 at offset 20\)"):
        load_space(path)


# SB3 spelling -> seed (canonical) spelling, written out by hand from SB3's PPO signature and the
# seed's search_space.yaml: the oracle for canonical_name, independent of config.ALIASES.
SB3_SPELLINGS = {
    "gamma": "discount_factor", "gae_lambda": "lambda_param", "clip_range": "ratio_clip",
    "clip_range_vf": "value_clip", "ent_coef": "entropy_loss_scale", "vf_coef": "value_loss_scale",
    "max_grad_norm": "grad_norm_clip", "n_epochs": "learning_epochs", "n_steps": "rollouts",
    "net_arch": "policy_hidden_layer_sizes",
}


def test_canonical_name_maps_each_sb3_spelling_to_the_seed_name():
    for sb3, seed in SB3_SPELLINGS.items():
        assert config.canonical_name(sb3, path="p", key="k") == seed, sb3
        assert config.canonical_name(seed, path="p", key="k") == seed  # a canonical name is kept
        assert seed in config.DOMAINS
    # every accepted alias is one of the above (a new one needs its row here)
    assert set(config.ALIASES) == set(SB3_SPELLINGS)
    # the aliases are real SB3 names: PPO(...) arguments, or net_arch in policy_kwargs
    import inspect

    from stable_baselines3 import PPO
    assert set(SB3_SPELLINGS) - set(inspect.signature(PPO).parameters) == {"net_arch"}
    for wrong in ("learnin_rate", "n_step", 3):
        with pytest.raises(AutoMLError, match="unknown parameter"):
            config.canonical_name(wrong, path="p", key="k")

"""Every search method and pruner through the same cases; a synthetic objective with a known optimum."""
import dataclasses
import math
import statistics

import optuna
import pytest

from automl.search import space, strategies
from automl.core.config import load_space, parse_space
from automl.core.errors import AutoMLError

optuna.logging.set_verbosity(optuna.logging.WARNING)

# enumerable (grid works) yet with continuous and integer ranges (TPE/CMA-ES have something to model),
# plus a list-valued categorical (CMA-ES falls back to its seeded independent sampler for it)
SYNTHETIC = parse_space({"search_space_id": "synthetic", "searchable": {
    "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-1, "grid_points": 5, "prior": 1e-3},
    "discount_factor": {"type": "uniform", "low": 0.9, "high": 0.999, "grid_points": 4},
    "learning_epochs": {"type": "int", "low": 1, "high": 20, "values": [1, 5, 10, 20], "prior": 10},
    "rollouts": {"type": "choice", "values": [8, 16, 32, 64, 128], "prior": 32},
    "net_arch": {"type": "choice", "values": [[32], [64, 64], [128, 128]], "prior": [64, 64]}}}, "synthetic.yaml")
OPTIMUM = {"learning_rate": 10 ** -3.5, "discount_factor": 0.99, "learning_epochs": 10, "rollouts": 32,
           "policy_hidden_layer_sizes": [64, 64]}


def objective(p: dict) -> float:
    """0 at OPTIMUM, negative elsewhere (maximize, as the driver does)."""
    return -((math.log10(p["learning_rate"]) + 3.5) ** 2 + ((p["discount_factor"] - 0.99) / 0.05) ** 2
             + ((p["learning_epochs"] - 10) / 5) ** 2 + (math.log2(p["rollouts"]) - 5) ** 2 / 4
             + (0 if p["policy_hidden_layer_sizes"] == [64, 64] else 0.5))


def run(method: str, seed: int, n_trials: int, *, prior: bool = False, spec=SYNTHETIC) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=strategies.make_sampler(method, seed=seed, spec=spec))
    if prior and strategies.warm_start(method, spec):
        study.enqueue_trial(strategies.warm_start(method, spec))
    study.optimize(lambda t: objective(space.suggest(t, spec)), n_trials=n_trials)
    return study


def test_objective_known_optimum():
    assert objective(OPTIMUM) == pytest.approx(0.0)


@pytest.mark.parametrize("method", list(strategies.SEARCH_METHODS))
def test_same_seed_same_configs(method):
    first, again = run(method, 7, 8), run(method, 7, 8)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert len({str(t.params) for t in first.trials}) > 1


@pytest.mark.parametrize("method", list(strategies.SEARCH_METHODS))
def test_different_seed_different_configs(method):
    assert [t.params for t in run(method, 1, 6).trials] != [t.params for t in run(method, 2, 6).trials]


@pytest.mark.parametrize("method", list(strategies.SEARCH_METHODS))
@pytest.mark.parametrize("complete", [True, False])
def test_prior_warm_start_and_domain(method, complete):
    spec = SYNTHETIC
    if complete:  # give discount_factor a prior too
        spec = dataclasses.replace(SYNTHETIC, params=tuple(
            dataclasses.replace(p, prior=0.933) if p.name == "discount_factor" else p for p in SYNTHETIC.params))
    study = run(method, 0, 6, prior=True, spec=spec)
    params = [space.decode_params(spec, t.params) for t in study.trials]
    prior = space.prior_params(spec)
    if complete or method != "grid":
        assert {k: params[0][k] for k in prior} == prior
    else:  # GridSampler cannot finish a partial trial: no warm start, and the grid runs as usual
        assert strategies.warm_start(method, spec) == {}
    for p in params:
        assert 1e-5 <= p["learning_rate"] <= 1e-1 and 0.9 <= p["discount_factor"] <= 0.999
        assert p["policy_hidden_layer_sizes"] in ([32], [64, 64], [128, 128])


def test_grid_visits_every_allowed_combination_once():
    spec = parse_space({"search_space_id": "g", "searchable": {
        "rollouts": {"type": "choice", "values": [16, 32, 64]},
        "learning_epochs": {"type": "int", "low": 4, "high": 10, "step": 3}},
        "constraints": ["rollouts > 40 and learning_epochs > 8"]}, "g.yaml")
    study = optuna.create_study(sampler=strategies.make_sampler("grid", seed=0, spec=spec))
    study.optimize(lambda t: float(len(space.violated_constraints(spec, space.suggest(t, spec)))), n_trials=50)
    visited = [space.decode_params(spec, t.params) for t in study.trials]
    assert len(visited) == 9  # the GridSampler stops the study when the grid is done
    allowed = [p for p in visited if not space.violated_constraints(spec, p)]
    assert sorted(map(str, allowed)) == sorted(map(str, space.grid(spec))) and len(allowed) == 3 * 3 - 1


def test_grid_needs_values_for_continuous_params():
    spec = parse_space({"search_space_id": "c", "searchable": {
        "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}}, "c.yaml")
    with pytest.raises(AutoMLError, match=r"c.yaml: searchable.learning_rate: .*`values: \[...\]` or `grid_points: N`"):
        strategies.make_sampler("grid", seed=0, spec=spec)


def test_random_ten_trials_improve_on_the_first():
    """Seed 000's done-when gate: 10 random trials find a better config than the first one."""
    for seed in range(5):
        study = run("random", seed, 10)
        assert study.best_value > study.trials[0].value


def test_tpe_beats_random_at_equal_budget():
    """40 trials, 5 seeds: TPE's median best is closer to the known optimum (0) than random's."""
    best = {m: statistics.median(run(m, s, 40).best_value for s in range(5)) for m in ("random", "tpe")}
    assert best["tpe"] > best["random"]


@pytest.mark.parametrize("name", list(strategies.PRUNERS))
def test_pruners_prune_a_clearly_worse_trial(name):
    """Trials report ever worse curves; every real pruner stops some, 'none' stops none."""
    pruner = strategies.make_pruner(name, min_resource=1, max_resource=9, reduction_factor=3)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))

    def curve(trial):
        for step in range(1, 10):
            trial.report(-trial.number * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return -trial.number * 9.0

    study.optimize(curve, n_trials=15)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert (len(pruned) == 0) if name == "none" else (len(pruned) > 0)


def test_registries_and_defaults():
    assert set(strategies.SEARCH_METHODS) == {"grid", "random", "bayesian", "tpe", "cmaes", "qmc", "hyperband", "nsga2"}
    assert set(strategies.PRUNERS) == {"none", "median", "asha", "hyperband"}
    assert isinstance(strategies.make_sampler("bayesian", seed=0, spec=SYNTHETIC), optuna.samplers.TPESampler)
    assert isinstance(strategies.make_sampler("hyperband", seed=0, spec=SYNTHETIC), optuna.samplers.TPESampler)
    assert isinstance(strategies.make_pruner("asha"), optuna.pruners.SuccessiveHalvingPruner)
    assert strategies.default_pruner_for("hyperband") == "hyperband"
    assert strategies.default_pruner_for("tpe") == "none"
    assert strategies.default_pruner_for("hyperband", "median") == "median"


def test_registries_match_the_one_list_of_names():
    """automl.core.names lists the names (the command line checks them without Optuna); the registries
    have a factory for exactly those, in the same order (the order of 'allowed: ...' in messages)."""
    from automl.core import names
    from automl.run import runconfig

    assert tuple(strategies.SEARCH_METHODS) == names.SEARCH_METHODS
    assert tuple(strategies.PRUNERS) == names.PRUNERS
    assert set(names.DEFAULT_PRUNERS) <= set(names.SEARCH_METHODS)
    assert set(names.DEFAULT_PRUNERS.values()) <= set(names.PRUNERS)
    assert runconfig.SEARCH_METHODS is names.SEARCH_METHODS and runconfig.PRUNERS is names.PRUNERS
    for method in names.SEARCH_METHODS:  # every name the command line accepts makes a sampler and its pruner
        fixed = runconfig.RunConfig(search_method=method, ladder="off")  # (the ladder prunes nothing: none)
        assert fixed.pruner_name == strategies.default_pruner_for(method)
        assert runconfig.RunConfig(search_method=method).pruner_name == "none"
        strategies.make_pruner(fixed.pruner_name)


@pytest.mark.parametrize("call, needle", [
    (lambda: strategies.make_sampler("bayes", seed=0, spec=SYNTHETIC), "--search-method: unknown 'bayes'"),
    (lambda: strategies.make_pruner("sha"), "--pruner: unknown 'sha'"),
    (lambda: strategies.make_pruner("asha", reduction_factor=1), "--reduction-factor: 1"),
    (lambda: strategies.make_pruner("asha", min_resource=0), "--min-resource: 0"),
    (lambda: strategies.make_pruner("hyperband", min_resource=5, max_resource=2), "--max-resource: 2"),
])
def test_bad_strategy_arguments(call, needle):
    with pytest.raises(AutoMLError) as info:
        call()
    assert needle in str(info.value) and "(allowed: " in str(info.value)


def test_grid_refuses_a_grid_too_large_to_run():
    spec = load_space(space.default_space_path("Pendulum-v1"))
    # ppo_default: lr 4 grid points x rollouts 6 x mini_batches 4 x epochs 4 x gamma 5 x lambda 5
    #              x ratio_clip 3 x entropy 4 x grad_norm 4 x nets 4 (seed 001's Deep [256, 256, 256] the 4th)
    assert space.grid_size(spec) == 4 * 6 * 4 * 4 * 5 * 5 * 3 * 4 * 4 * 4 == 1_843_200
    with pytest.raises(AutoMLError, match="grid has 1843200 combinations .*use random or bayesian"):
        strategies.make_sampler("grid", seed=0, spec=spec)

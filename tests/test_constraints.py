"""The constraint evaluator: known truth values, and everything outside the grammar refused."""
import pytest

from automl.core import constraints
from automl.core.config import ALIASES
from automl.core.errors import AutoMLError

VALUES = {"learning_rate": 1e-3, "learning_epochs": 10, "ratio_clip": 0.2, "rollouts": 32, "num_envs": 64,
          "normalize": True, "discount_factor": 0.98}


@pytest.mark.parametrize("expr, expected", [
    ("learning_rate > 5e-4 and learning_epochs > 8", True),
    ("learning_rate > 5e-4 and learning_epochs > 10", False),
    ("learning_rate > 5e-3 or ratio_clip < 0.3", True),
    ("not (ratio_clip < 0.3)", False),
    ("0.1 < ratio_clip <= 0.2", True),       # chained
    ("0.1 < ratio_clip < 0.2", False),
    ("rollouts * num_envs / 4 == 512", True),
    ("rollouts - 2 * 16 == 0", True),
    ("-rollouts < -31", True),
    ("+rollouts != 32", False),
    ("normalize and learning_rate >= 1e-3", True),
    ("(rollouts + 32) * 2 >= 128", True),
    ("gamma < 0.99", True),                  # SB3 alias resolves to discount_factor
    ("n_steps == 32", True),
])
def test_known_truth_values(expr, expected):
    assert constraints.evaluate(expr, VALUES, resolve=ALIASES) is expected


@pytest.mark.parametrize("expr, needle", [
    ("__import__('os')", "Call"),
    ("learning_rate.real > 0", "Attribute"),
    ("rollouts[0] > 1", "Subscript"),
    ("rollouts > 'a'", "constant 'a'"),
    ("rollouts ** 2 > 1", "BinOp"),
    ("rollouts // 2 > 1", "BinOp"),
    ("(lambda: 1)()", "Call"),
    ("[x for x in rollouts]", "ListComp"),
    ("rollouts in [1, 2]", "Compare"),
    ("rollouts is None", "Compare"),
    ("rollouts if normalize else 1", "IfExp"),
    ("True", "constant True"),
    ("rollouts >", "not a valid expression"),
    ("", "not a non-empty string"),
])
def test_outside_grammar_refused(expr, needle):
    with pytest.raises(AutoMLError) as info:
        constraints.parse(expr, where="f.yaml: constraints[0]")
    assert needle in str(info.value) and str(info.value).startswith("f.yaml: constraints[0]")


def test_non_string_refused():
    with pytest.raises(AutoMLError, match="not a non-empty string"):
        constraints.parse(3, where="w")


def test_check_unknown_name_lists_known_names():
    resolve = {"learning_rate": "learning_rate", "learning_epochs": "learning_epochs", "n_epochs": "learning_epochs"}
    with pytest.raises(AutoMLError) as info:
        constraints.check("learning_rat > 1", where="s.yaml: constraints[1]", resolve=resolve,
                          numeric={"learning_rate", "learning_epochs"})
    message = str(info.value)
    assert "s.yaml: constraints[1]" in message and "'learning_rat'" in message
    assert "did you mean 'learning_rate'" in message and "allowed: learning_epochs, learning_rate" in message


def test_check_refuses_list_valued_names():
    with pytest.raises(AutoMLError, match="'net_arch', which is not a number"):
        constraints.check("net_arch > 1", where="w", resolve={"net_arch": "policy_hidden_layer_sizes"},
                          numeric=set())


def test_evaluation_errors_are_automl_errors():
    with pytest.raises(AutoMLError, match="division by zero"):
        constraints.evaluate("rollouts / (num_envs - 64) > 1", VALUES)
    with pytest.raises(AutoMLError, match="no value"):
        constraints.evaluate("missing > 1", VALUES)
    with pytest.raises(AutoMLError, match="not a number"):
        constraints.evaluate("layers > 1", {"layers": [64, 64]})


def test_short_circuit_skips_the_unneeded_side():
    # and/or short-circuit like Python: the division by zero on the right is never evaluated
    assert constraints.evaluate("num_envs < 0 and rollouts / 0 > 1", VALUES) is False
    assert constraints.evaluate("num_envs > 0 or rollouts / 0 > 1", VALUES) is True


def test_names_in_order():
    tree = constraints.parse("b > 1 and a < b or c", where="w")
    assert constraints.names(tree) == ["b", "a", "c"]

"""The online tuner's names: actuators, seed 004's nested spellings of them, metrics and horizons.

Seed 004 (hotcb's hottune) writes its actuators nested by family, for a supervised model::

    actuators:
      opt:  {enabled: true, mutations: {lr_mult: {bounds: [0.7, 1.2]}}}
      loss: {enabled: true, keys: {sp_mse_w: {mode: mult, bounds: [0.5, 2.0]}}}

Here the families are PPO's: ``opt.mutations.<name>`` are PPO's Adam (learning rate, weight decay, betas,
eps), ``loss.keys.<key>`` are the PPO loss's weights (``vf_coef``, ``ent_coef``), ``reward.keys.<term>`` the
task's reward weights. Every nested name resolves to one flat actuator name (the name the recipe, the logs
and the trainers' ``set_values`` use); the flat names are accepted as they are. Names that belong to a
supervised model (``val/loss``, ``sp_mse_w``) are refused in one line naming this project's equivalents.
"""
from __future__ import annotations

# the built-in actuators (flat names), plus reward.<term>
PPO_ACTUATORS = ("learning_rate", "ent_coef", "clip_range", "vf_coef")
OPTIMIZER_ACTUATORS = ("weight_decay", "adam_beta1", "adam_beta2", "adam_eps")   # PPO's Adam
BUILTIN = PPO_ACTUATORS + OPTIMIZER_ACTUATORS
LOSS_KEYS = ("vf_coef", "ent_coef")     # the weights of PPO's loss terms: value loss, entropy bonus

# seed 004's nested names -> ours (a name ending in _mult is a factor: mode mult)
OPT_ALIASES = {"lr": "learning_rate", "lr_mult": "learning_rate", "learning_rate": "learning_rate",
               "weight_decay": "weight_decay", "wd": "weight_decay", "wd_mult": "weight_decay",
               "beta1": "adam_beta1", "beta2": "adam_beta2", "eps": "adam_eps",
               "adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_eps": "adam_eps"}
LOSS_ALIASES = {"vf_coef": "vf_coef", "value_loss_scale": "vf_coef", "ent_coef": "ent_coef",
                "entropy_loss_scale": "ent_coef"}
FAMILIES = {"opt": "mutations", "loss": "keys", "reward": "keys"}   # family -> the key holding its actuators
FAMILY_KEYS = ("enabled",)                                         # a family's own settings beside that key

# evaluation metrics a mutation may be judged on (the EvalStats fields), and the backups' extra
EVAL_METRICS = ("true_metric", "success_rate", "reference_return", "shaped_return")
METRIC_ALIASES = {"episode_reward_mean": "true_metric", **{f"eval/{m}": m for m in EVAL_METRICS}}
TRAIN_METRICS = ("grad/norm",)          # the root mean square of the updates' pre-clip gradient norms
BACKUPS = EVAL_METRICS + TRAIN_METRICS
NATURAL_MODE = {"grad/norm": "min"}     # a backup's direction when the recipe gives none (others: max)
# "the next evaluation" (seed 004: the next val_epoch_end) -> evaluations after a mutation before it is judged
HORIZONS = {"next_val_epoch_end": 1, "next_eval": 1, "next_evaluation": 1}

SUPERVISED_METRICS = ("val/loss", "train/loss", "val/score", "val/acc", "val/accuracy", "loss", "accuracy")
EQUIVALENT_METRICS = ("true_metric (the task's metric: success_rate on navigation, reference_return otherwise), "
                      "success_rate, reference_return, shaped_return")


def supervised_metric(name: str, key: str, backup: bool = False) -> str:
    """The one line that refuses a supervised model's metric and names this project's equivalents."""
    extra = "; backups also grad/norm" if backup else ""
    return (f"{key}: {name!r} is a supervised model's metric: PPO has no validation loss (allowed: an evaluation "
            f"metric: {EQUIVALENT_METRICS}{extra})")


def supervised_loss_key(key: str, name: str) -> str:
    """The one line that refuses a loss weight that is not PPO's."""
    return (f"{key}: {name!r} is not a loss weight of PPO (allowed: {', '.join(LOSS_KEYS)} (value loss and entropy "
            f"bonus weights; also value_loss_scale, entropy_loss_scale); reward weights as reward.keys.<term>)")


def metric_name(name: str) -> str:
    """A metric's name as the tuner knows it (``episode_reward_mean`` and ``eval/...`` spellings resolved)."""
    return METRIC_ALIASES.get(name, name)


def moves(actuator: str, metric: str) -> bool:
    """Whether mutating ``actuator`` moves ``metric`` by itself (so it says nothing about the mutation):
    the shaped return moves with the reward weights; the gradient norm scales with the loss weights."""
    if metric == "shaped_return":
        return actuator.startswith("reward.")
    if metric == "grad/norm":
        return actuator in LOSS_KEYS
    return False


def resolve(family: str, name: str, key: str) -> tuple[str, str | None]:
    """(flat actuator name, a forced mode or None) of ``family``'s nested ``name``; ValueError(one line)."""
    if family == "reward":
        return f"reward.{name}", None
    if family == "loss":
        if name not in LOSS_ALIASES:
            raise ValueError(supervised_loss_key(key, name))
        return LOSS_ALIASES[name], None
    if name == "betas":
        raise ValueError(f"{key}: Adam's betas are two actuators here (allowed: beta1, beta2, each with its own "
                         "bounds)")
    if name not in OPT_ALIASES:
        raise ValueError(f"{key}: unknown optimizer actuator (allowed: {', '.join(OPT_ALIASES)})")
    return OPT_ALIASES[name], ("mult" if name.endswith("_mult") else None)

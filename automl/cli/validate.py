"""`automl validate FILE`: a short human summary of a search space (or preset), or an AutoMLError."""
from __future__ import annotations

import itertools

from automl.core import config
from automl.search import presets, space
from automl.core.config import DEFAULT_NUM_ENVS, SB3_DEFAULTS, ParamSpec, SpaceSpec, to_ppo_setup
from automl.core.errors import AutoMLError
from automl.core.values import fmt_value

MAX_DIVISIBILITY_CHECK = 10_000  # rollouts x num_envs x mini_batches combinations checked exhaustively


def _fmt(value) -> str:
    """A value as a space file spells it: floats as %g, strings quoted, null as None."""
    return fmt_value(config.thaw(value), "g", none="None", quote=True)


def describe_param(p: ParamSpec) -> str:
    """One line: name, type, range or choices, prior."""
    if p.type == "categorical":
        domain = "{" + ", ".join(_fmt(c) for c in p.choices) + "}"
    else:
        domain = f"[{_fmt(p.low)}, {_fmt(p.high)}]" + (f" step {_fmt(p.step)}" if p.step else "")
        domain += " log" if p.log and p.type == "int" else ""
        if p.choices:
            domain += " grid {" + ", ".join(_fmt(c) for c in p.choices) + "}"
        elif p.grid_points:
            domain += f" grid_points {p.grid_points}"
    prior = _fmt(p.prior) if p.prior is not None else "-"
    return f"  {p.name:<26} {p.type:<11} {domain}  prior {prior}"


def _grid_line(spec: SpaceSpec) -> str:
    try:
        total = space.grid_size(spec)
    except AutoMLError as err:
        reason = str(err).split(": ", 1)[-1]
        return f"grid: not enumerable ({reason})"
    if total > space.MAX_GRID:
        return f"grid: not enumerable ({total} combinations, more than {space.MAX_GRID})"
    kept = len(space.grid(spec))
    return f"grid: {kept} configs ({total} combinations, {total - kept} rejected by constraints)"


def _values(spec: SpaceSpec, name: str, default) -> list:
    if name in spec.fixed:
        return [spec.fixed[name]]
    if name in spec.names:
        return space.grid_values(spec, spec.param(name))
    return [default]


def _divisibility_line(spec: SpaceSpec) -> str | None:
    """Warn when some rollouts x num_envs x mini_batches combination cannot split into equal batches."""
    if "mini_batches" not in spec.fixed and "mini_batches" not in spec.names:
        return None
    try:
        columns = [_values(spec, "rollouts", SB3_DEFAULTS["n_steps"]),
                   _values(spec, "num_envs", DEFAULT_NUM_ENVS), _values(spec, "mini_batches", 1)]
    except AutoMLError:
        return "mini_batches: divisibility not checked (a continuous range); a bad draw fails that trial"
    combos = list(itertools.islice(itertools.product(*columns), MAX_DIVISIBILITY_CHECK))
    bad = [c for c in combos if (c[0] * c[1]) % c[2]]
    if not bad:
        return None
    n, e, m = bad[0]
    return (f"warning: {len(bad)} of {len(combos)} rollouts x num_envs x mini_batches combinations do not divide "
            f"(e.g. {n}*{e} % {m} != 0); those trials fail with an error")


def summarize_space(spec: SpaceSpec) -> str:
    """The summary text of a validated space; also converts the prior config to catch impossible priors."""
    prior_config = space.merged(spec, space.prior_params(spec))
    setup = to_ppo_setup(prior_config, path=f"{spec.path}: priors")
    violated = space.violated_constraints(spec, space.prior_params(spec))
    lines = [f"{spec.path}: search space {spec.search_space_id}",
             "fixed: " + (", ".join(f"{k}={_fmt(v)}" for k, v in spec.fixed.items()) or "-"),
             f"searchable ({len(spec.params)}):", *(describe_param(p) for p in spec.params),
             f"constraints ({len(spec.constraints)}, each rejects what it matches):",
             *(f"  - {c}" for c in spec.constraints), _grid_line(spec)]
    warning = _divisibility_line(spec)
    if warning:
        lines.append(warning)
    if violated:
        lines.append(f"warning: the priors are rejected by: {'; '.join(violated)}")
    kw = setup.ppo_kwargs
    lines.append(f"prior config -> PPO n_steps={kw['n_steps']} batch_size={kw['batch_size']} "
                 f"n_epochs={kw['n_epochs']} num_envs={setup.num_envs} n_timesteps={setup.n_timesteps}")
    return "\n".join(lines)


def summarize_preset(preset: presets.Preset) -> str:
    """The summary text of a preset (what it changes in a base space)."""
    lines = [f"{preset.path}: preset {preset.name} (mode {preset.mode})"]
    if preset.description:
        lines.append(f"  {preset.description}")
    if preset.mode == "narrow":
        lines.append("narrow: " + ", ".join(f"{k}={_fmt(v)}" for k, v in preset.narrow.items()))
    lines.append(f"searchable ({len(preset.searchable)}):")
    lines += [describe_param(p) for p in preset.searchable]
    if preset.fixed:
        lines.append("fixed: " + ", ".join(f"{k}={_fmt(v)}" for k, v in preset.fixed.items()))
    lines += [f"  - {c}" for c in preset.constraints]
    lines.append("run_defaults: " + (", ".join(f"{k}={_fmt(v)}" for k, v in preset.run_defaults.items()) or "-"))
    return "\n".join(lines)


ALLOWED = (f"a search space (keys {', '.join(config.SPACE_KEYS)}) or a preset "
           f"(keys {', '.join(presets.PRESET_KEYS)}, or parameter entries)")


def _is_preset(data) -> bool:
    """No search_space_id and only preset keys or parameter entries (the seed's snippets) -> a preset."""
    if not isinstance(data, dict) or "search_space_id" in data:
        return False
    return not data.keys() - {*presets.PRESET_KEYS, *config.CANONICAL_NAMES, *config.ALIASES}


def summary(path) -> str:
    """Validate FILE (a search space, or a preset when it has no search_space_id) and summarize it."""
    data = config.load_yaml(path, allowed=ALLOWED)
    if _is_preset(data):
        return summarize_preset(presets.parse_preset(data, str(path))) + "\n(no search_space_id: read as a preset)"
    return summarize_space(config.parse_space(data, str(path)))

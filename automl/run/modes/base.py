"""What every run mode declares, with the defaults of the staged modes (stage, hp, reward).

A mode is one object of declarations: its flags and their checks (``check``) and its plan (``cycles``,
``tuning_configs``, ``stages``). ``automl.run.mode_run`` makes the run of them (the --dry-run text, the
phases; the search owners: ``automl.run.opening.search_owners``). The driver, the plan and the live view ask the run's mode
(``RunConfig.run_mode``) and never compare its name. Flag checks run when a RunConfig is built, before
anything of the run exists, so a mode module imports nothing of the run.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, NamedTuple

from automl.core.errors import AutoMLError
from automl.core.record import Kind


class Stage(NamedTuple):
    """One tuning phase of the plan: ``quota`` configs of ``kind`` in ``cycle``."""

    kind: Kind
    cycle: int
    quota: int


class Flag(NamedTuple):
    """A flag a mode adds to ``automl run``; its value reaches the mode as ``cfg.mode_options[dest]``.

    :param name: the flag, e.g. ``--eta``
    :param type: what argparse converts the text with (int, float, str)
    :param default: the value when the flag is not given
    :param help: what ``automl --help`` says (the mode and the default are added)
    """

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str

    @property
    def dest(self) -> str:
        """The option's key: ``--min-steps`` -> ``min_steps``."""
        return self.name.lstrip("-").replace("-", "_")


class Mode:
    """A run mode. The class attributes are its declarations; the methods its answers.

    :param name: the ``--mode`` value (also the state file's fingerprint)
    :param summary: what ``automl --help`` says about it ('' for nothing)
    :param hp_phases: a cycle has an HP phase (the HP search; the incumbent's reward weights)
    :param reward_phases: a cycle has a reward phase (the reward search; the incumbent's HPs), when the
        env has reward terms
    :param needs_reward_terms: a gymnasium id without ``--rewards`` is refused
    :param allows_selection: ``--metrics`` and ``--constraint`` are accepted
    :param checks_minimum_budget: calibration refuses a budget too small for one config and its re-check
    :param default_pruner: the pruner without ``--pruner`` (None: the search method's)
    :param baseline_owner: the search owner whose first proposal of a new run is the baseline
    :param extends_when_pruned: the last tuning phase goes on past its quota when a pruner saves time
    :param climbs_ladder: its tuning phases climb the fidelity ladder by default (``--ladder``)
    :param joint_search: its stages ask one search over HPs and reward weights together (``Kind.JOINT``)
    :param trains_population: no stages: a population trains together, then the winner's schedule is
        replayed on the test seeds (``automl.run.pbt``)
    :param flags: the mode's own flags (``Flag``); ``check`` validates their values in ``cfg.mode_options``
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    hp_phases: ClassVar[bool] = True
    reward_phases: ClassVar[bool] = True
    needs_reward_terms: ClassVar[bool] = True
    allows_selection: ClassVar[bool] = True
    checks_minimum_budget: ClassVar[bool] = True
    default_pruner: ClassVar[str | None] = None
    baseline_owner: ClassVar[Kind] = Kind.HP
    extends_when_pruned: ClassVar[bool] = False
    climbs_ladder: ClassVar[bool] = True
    joint_search: ClassVar[bool] = False
    trains_population: ClassVar[bool] = False
    flags: ClassVar[tuple[Flag, ...]] = ()

    def __repr__(self) -> str:
        return f"<mode {self.name}>"

    # ---- flags -------------------------------------------------------------------------------
    def options(self, given: dict) -> dict:
        """Every flag of this mode with its value (``given``, else its default); a flag of another mode is
        refused in one line."""
        mine = {f.dest: f for f in self.flags}
        for key in given:
            if key not in mine:
                allowed = ", ".join(f.name for f in self.flags) or "none"
                refuse(f"--{key.replace('_', '-')}", f"not a flag of --mode {self.name} (allowed: {allowed})")
        return {dest: given.get(dest, f.default) for dest, f in mine.items()}

    def check(self, cfg) -> None:
        """Refuse flags this mode cannot run with (one line naming the flag and the allowed values)."""

    def fingerprint_settings(self, cfg) -> dict:
        """The mode's own settings that a resumed run must match (keys of the state file's fingerprint):
        its flags' values under its name, when it has flags."""
        return {self.name: dict(cfg.mode_options)} if self.flags else {}

    # ---- plan --------------------------------------------------------------------------------
    def cycles(self, cfg) -> int:
        """HP-then-reward cycles: --reward-generations, at least one."""
        return max(1, cfg.reward_generations)

    def tuning_configs(self, cfg, has_terms: bool, population: int) -> int:
        """Tuning configs the plan sizes trials for (each trains --seeds seed jobs)."""
        cycles = self.cycles(cfg)
        hp = cfg.hp_trials * cycles if self.hp_phases else 0
        if cfg.max_trials:
            hp = min(hp, cfg.max_trials)
        reward = population * cycles if self.reward_phases and has_terms else 0
        return hp + reward

    def stages(self, plan, cfg, has_terms: bool) -> list[Stage]:
        """The tuning phases in order: per cycle an HP phase, then a reward phase (as declared);
        --max-trials caps the HP configs of all cycles together."""
        out, hp_left = [], cfg.max_trials or 10**9
        for cycle in range(1, plan.cycles + 1):
            if self.hp_phases:
                quota = min(plan.hp_trials, hp_left)
                hp_left -= quota
                if quota > 0:
                    out.append(Stage(Kind.HP, cycle, quota))
            if self.reward_phases and has_terms:
                out.append(Stage(Kind.REWARD, cycle, plan.population))
        return out


def refuse(flag: str, text: str) -> None:
    """Raise the one-line error of a flag this mode cannot run with."""
    raise AutoMLError(f"{flag}: {text}")

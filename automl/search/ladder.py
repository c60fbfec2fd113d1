"""The fidelity ladder's promotion rule: asynchronous successive halving (ASHA, Li et al. 2020).

Configs enter at the lowest rung. Each rung ``k`` trains a config (all its seeds together) on to
``rungs[k]`` steps in all, continuing from its own checkpoint; once it finished there, its value (the
run's ``--objective`` over its seeds) is recorded. A config is promotable from rung ``k`` while it is
among the best ``floor(n_k / eta)`` of the ``n_k`` configs that finished rung ``k`` and was not promoted
from there yet. ``next_promotion`` looks from the highest rung down (ASHA's order: the nearly finished
get the workers first), so no worker waits for a rung to fill. A config whose value is no better than
``floor`` (the untrained prior's worst score in calibration) learned nothing at its rung: it is never
promoted, so the longer rungs go only to configs that learn (on a sparse-reward task such as MountainCar
most configs score exactly the floor, and rank-only ASHA would promote the first of them to the top rung).

Pure and serialisable (``to_dict``/``from_dict``): the state file keeps it, so a killed run resumes
mid-ladder without losing a promotion. Values are "larger is better" (``direction='minimize'`` flips
them); a failed config's value is None and it ranks below every value. Ties go to the config that
finished the rung first.

The samplers are told a config's result in Optuna's own multi-fidelity order (``sampler_outcome``): a
config that reached the top rung is COMPLETE with its top-rung value; one that stopped below is PRUNED
with its value as the intermediate value at its rung's step. Optuna's TPE ranks COMPLETE trials above
PRUNED ones, and PRUNED ones by the step they reached, then by that value, so values are only ever
compared between configs trained for the same number of steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable


@dataclass(frozen=True)
class Ladder:
    """Rung lengths (total steps per config seed at each rung, increasing) and the reduction factor."""

    rungs: tuple[int, ...]
    eta: int = 3

    def __post_init__(self):
        if not self.rungs or any(b <= a for a, b in zip(self.rungs, self.rungs[1:])) or self.rungs[0] <= 0:
            raise ValueError(f"ladder rungs: {list(self.rungs)} (allowed: increasing positive step counts)")
        if int(self.eta) < 2:
            raise ValueError(f"ladder eta: {self.eta} (allowed: an integer >= 2)")

    @property
    def top(self) -> int:
        """The index of the top rung."""
        return len(self.rungs) - 1

    def extra_steps(self, rung: int) -> int:
        """Steps one seed trains to reach ``rung`` from the rung below (continuation: only the extra)."""
        return self.rungs[rung] - (self.rungs[rung - 1] if rung > 0 else 0)

    def to_dict(self) -> dict:
        return {"rungs": [int(r) for r in self.rungs], "eta": int(self.eta)}

    @classmethod
    def from_dict(cls, d: dict) -> "Ladder":
        return cls(rungs=tuple(int(r) for r in d["rungs"]), eta=int(d.get("eta", 3)))


def _key(value: float | None) -> float:
    """Sort key, larger first: a failed (None or NaN) config ranks below every value."""
    return -math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class Promotions:
    """ASHA bookkeeping over one ladder: who finished which rung with what value, who went up."""

    ladder: Ladder
    direction: str = "maximize"
    results: dict[int, dict[str, float | None]] = field(default_factory=dict)   # rung -> {config: value} in arrival order
    promoted: dict[int, list[str]] = field(default_factory=dict)                # rung -> configs promoted from it
    closed: set[str] = field(default_factory=set)                                 # configs that never climb again
    floor: float | None = None   # a value no better than this learned nothing: never promoted (None: no floor)

    def __post_init__(self):
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"ladder direction: {self.direction!r} (allowed: maximize, minimize)")

    def _signed(self, value: float | None) -> float | None:
        return value if value is None or self.direction == "maximize" else -float(value)

    def record(self, config_id: str, rung: int, value: float | None) -> None:
        """``config_id`` finished ``rung`` with ``value`` (None: it failed, and stops climbing)."""
        if not 0 <= rung <= self.ladder.top:
            raise ValueError(f"rung {rung} of config {config_id} (allowed: 0..{self.ladder.top})")
        self.results.setdefault(rung, {})[config_id] = None if value is None else float(value)
        if value is None or rung == self.ladder.top:
            self.closed.add(config_id)

    def close(self, config_id: str) -> None:
        """``config_id`` stops climbing (pruned inside a rung, stopped at the deadline, rejected)."""
        self.closed.add(config_id)

    def rung_of(self, config_id: str) -> int | None:
        """The highest rung ``config_id`` finished; None if it finished none."""
        done = [k for k, r in self.results.items() if config_id in r]
        return max(done) if done else None

    def value(self, config_id: str, rung: int | None = None) -> float | None:
        """``config_id``'s value at ``rung`` (default: the highest it finished)."""
        rung = self.rung_of(config_id) if rung is None else rung
        return None if rung is None else self.results.get(rung, {}).get(config_id)

    def ranked(self, rung: int) -> list[str]:
        """The configs that finished ``rung``, best first (ties: the earlier finisher first)."""
        entries = list(self.results.get(rung, {}).items())
        order = sorted(range(len(entries)), key=lambda i: (-_key(self._signed(entries[i][1])), i))
        return [entries[i][0] for i in order]

    def learned(self, value: float | None) -> bool:
        """Whether ``value`` is better than the floor (always, without one); a failed config's never is."""
        if value is None:
            return False
        if self.floor is None:
            return True
        return value > self.floor if self.direction == "maximize" else value < self.floor

    def candidates(self, rung: int) -> list[str]:
        """Configs promotable from ``rung`` now, best first: in its top floor(n/eta), finite value better than
        the floor, not promoted from it yet, not closed."""
        if rung >= self.ladder.top:
            return []
        ranked = self.ranked(rung)
        top = ranked[: len(ranked) // self.ladder.eta]
        done = set(self.promoted.get(rung, []))
        return [c for c in top if c not in done and c not in self.closed
                and self.learned(self.results[rung][c]) and self.rung_of(c) == rung]

    def next_promotion(self, fits: Callable[[str, int], bool] | None = None) -> tuple[str, int] | None:
        """(config, rung to train it to) for the next promotion, highest rung first; ``fits(config, rung)``
        may veto one that would not finish in time (the next candidate is tried). None: nothing to promote."""
        for rung in range(self.ladder.top - 1, -1, -1):
            for c in self.candidates(rung):
                if fits is None or fits(c, rung + 1):
                    return c, rung + 1
        return None

    def mark_promoted(self, config_id: str, to_rung: int) -> None:
        """``config_id`` starts training towards ``to_rung`` (it leaves ``to_rung - 1``'s candidates)."""
        lst = self.promoted.setdefault(to_rung - 1, [])
        if config_id not in lst:
            lst.append(config_id)

    def lower_top(self) -> bool:
        """Drop the top rung (it became unaffordable) while no config finished it or climbs to it; the rung
        below becomes the top, and the configs that finished it are complete. False when it cannot."""
        top = self.ladder.top
        if top == 0 or self.results.get(top) or self.promoted.get(top - 1):
            return False
        self.ladder = Ladder(rungs=self.ladder.rungs[:-1], eta=self.ladder.eta)
        self.closed.update(self.results.get(top - 1, {}))
        return True

    def in_ladder(self) -> Iterable[str]:
        """Every config that finished at least one rung."""
        seen: dict[str, None] = {}
        for rung in sorted(self.results):
            seen.update(dict.fromkeys(self.results[rung]))
        return list(seen)

    def sampler_outcome(self, config_id: str) -> tuple[str, int | None, float | None]:
        """(state, step, value) to tell a sampler: ('complete', top steps, value) for a config that finished
        the top rung, ('pruned', its rung's steps, value) for one that stopped below, ('fail', None, None) for
        a failed one (Optuna's TPE orders PRUNED trials by the step reached, then by value)."""
        rung = self.rung_of(config_id)
        if rung is None:
            return "fail", None, None
        value = self.value(config_id, rung)
        if value is None:
            return "fail", None, None
        state = "complete" if rung == self.ladder.top else "pruned"
        return state, self.ladder.rungs[rung], value

    def to_dict(self) -> dict:
        return {"ladder": self.ladder.to_dict(), "direction": self.direction,
                "results": {int(k): dict(v) for k, v in sorted(self.results.items())},
                "promoted": {int(k): list(v) for k, v in sorted(self.promoted.items())},
                "closed": sorted(self.closed), "floor": self.floor}

    @classmethod
    def from_dict(cls, d: dict) -> "Promotions":
        return cls(ladder=Ladder.from_dict(d["ladder"]), direction=str(d.get("direction", "maximize")),
                   results={int(k): {str(c): (None if v is None else float(v)) for c, v in r.items()}
                            for k, r in (d.get("results") or {}).items()},
                   promoted={int(k): [str(c) for c in v] for k, v in (d.get("promoted") or {}).items()},
                   closed={str(c) for c in d.get("closed") or []},
                   floor=None if d.get("floor") is None else float(d["floor"]))

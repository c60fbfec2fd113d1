"""The sole writer of progress files: automl_state.yaml, events.jsonl, best.yaml (atomic replace)."""
from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import yaml

from automl.core.errors import AutoMLError
from automl.core.values import plain as to_plain


STATE_FILE = "automl_state.yaml"
EVENTS_FILE = "events.jsonl"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; progress files are for tailing and sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# libyaml's emitter when PyYAML was built with it (its wheels are): the same text, ~10x faster, which
# matters because the state file is rewritten at every seed event of a run
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    """YAML text in the progress-file style (block style, insertion order kept)."""
    return yaml.dump(to_plain(data), Dumper=_DUMPER, sort_keys=False, default_flow_style=None, width=110)


class StateStore:
    """Reads and atomically rewrites one run directory's progress files."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STATE_FILE
        self.events_path = self.run_dir / EVENTS_FILE

    def exists(self) -> bool:
        """Whether a state file was written before in this run directory."""
        return self.path.exists()

    def load(self) -> dict:
        """The recorded state; a corrupt file is a clear error and is left untouched."""
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AutoMLError(f"{self.path}: corrupt state file ({first}); the file is kept as is; "
                              "re-run with --fresh to start over (allowed: a YAML mapping written "
                              "by automl)") from None
        if not isinstance(data, dict) or "version" not in data:
            raise AutoMLError(f"{self.path}: not an automl state file (missing key 'version'); "
                              "re-run with --fresh to start over")
        return data

    def write(self, state: dict) -> None:
        """Atomically replace automl_state.yaml with `state`."""
        atomic_write_text(self.path, dump_yaml(state))

    def write_yaml(self, name: str, data: Any) -> Path:
        """Atomically write another YAML file (e.g. best.yaml) in the run directory."""
        path = self.run_dir / name
        atomic_write_text(path, dump_yaml(data))
        return path

    def read_yaml(self, name: str) -> Any:
        """Another YAML file of the run directory (e.g. best.yaml); None when absent or unreadable."""
        try:
            return yaml.safe_load((self.run_dir / name).read_text())
        except (OSError, yaml.YAMLError):
            return None

    def event(self, event_name: str, /, **fields: Any) -> None:
        """Append one line to events.jsonl (for tailing and tools)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {"t": round(time.time(), 3), "event": event_name, **to_plain(fields)}
        line = json.dumps(record, default=str, allow_nan=True)
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def archive(self) -> Path | None:
        """Move an earlier run's directory aside (used by --fresh); nothing is deleted."""
        if not self.run_dir.exists() or not any(self.run_dir.iterdir()):
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.run_dir.with_name(f"{self.run_dir.name}.prev-{stamp}")
        n = 1
        while target.exists():
            target = self.run_dir.with_name(f"{self.run_dir.name}.prev-{stamp}-{n}")
            n += 1
        self.run_dir.rename(target)
        return target


def load_state_yaml(path: Path) -> dict:
    """Read a YAML file of a run directory (state, best.yaml) for the read-only commands: one clear line if it is missing or corrupt."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise AutoMLError(f"{path}: not found (run `automl --mode stage ...` first)") from None
    except yaml.YAMLError as exc:
        raise AutoMLError(f"{path}: corrupt YAML ({str(exc).splitlines()[0]})") from None


@dataclass(frozen=True)
class HeldoutResult:
    """What the held-out phase returns: its ranking (objective, IQM, CI, baseline flag; the winner first) and,
    with --metrics/--constraint, the held-out front and infeasible configs."""

    ranking: list[dict]
    pareto: dict | None = None


@dataclass(frozen=True)
class TestPhaseResult:
    """What the test phase returns: the test scores of the configs it trained (the winner first)."""

    __test__ = False  # not a pytest test class
    scores: list[dict]


PhaseResult = HeldoutResult | TestPhaseResult | None  # what a phase's run() returns (tuning phases: None)


@dataclass
class PhaseResults:
    """What the phases hand over, for the state file and the phases after them: the driver adopts each
    phase's result; PBT's population and the lost jobs are live state, kept up to date as the run goes."""

    heldout: list[dict] | None = None   # HeldoutResult.ranking, once the held-out phase returned
    pareto: dict | None = None          # HeldoutResult.pareto
    test: list[dict] | None = None      # TestPhaseResult.scores
    pbt: dict | None = None             # --mode pbt: the population, its ready points and lineage
    lost_jobs: list[dict] = field(default_factory=list)  # --executor ray: seed jobs lost with their node

    def adopt(self, result: PhaseResult) -> None:
        """Keep a phase's result (None: nothing to keep)."""
        if isinstance(result, HeldoutResult):
            self.heldout, self.pareto = result.ranking, result.pareto
        elif isinstance(result, TestPhaseResult):
            self.test = result.scores


def iso(t: float) -> str:
    """A time as the state file writes it (UTC, ISO 8601)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

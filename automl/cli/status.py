"""`automl status [--follow]`: a live rich view of a run's automl_state.yaml (read-only)."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from automl.core.values import fmt_interval, fmt_value
from automl.run.state import STATE_FILE, load_state_yaml

END_STATES = ("finished", "budget_exhausted", "interrupted", "failed")


def render(state: dict):
    """One screen: status line, budget bar, best so far, trials table, alarms."""
    b = state.get("budget") or {}
    total = float(b.get("hours", 0)) * 3600 or 1.0
    used = float(b.get("elapsed_s", 0))
    st = state.get("stage") or {}
    head = Text(f"{state.get('status')}  env={state.get('env')}  stage={st.get('kind')}#{st.get('cycle')}  "
                f"budget {used / 60:.1f}/{total / 60:.1f} min  (remaining {float(b.get('remaining_s', 0)) / 60:.1f})")
    bar = ProgressBar(total=total, completed=min(used, total), width=60)
    best = state.get("best") or {}
    score = best.get("score") or {}
    best_line = Text(f"best: {best.get('config_id', '-')}  mean={fmt_value(score.get('mean'))}  "
                     f"iqm={fmt_value(score.get('iqm'))}  ci95={score.get('ci95', '-')}")
    table = Table(title="trials", show_lines=False)
    for col in ("config", "kind", "cycle", "state", "seeds", "mean", "ci95"):
        table.add_column(col)
    for t in (state.get("trials") or [])[-25:]:
        s = t.get("score") or {}
        ci = s.get("ci95")
        table.add_row(str(t.get("config_id")), str(t.get("kind")), str(t.get("cycle")), str(t.get("state")),
                      str(len(t.get("seeds") or [])), fmt_value(s.get("mean")),
                      fmt_interval(ci) if ci else "-")
    alarms = [Text(f"ALARM {a.get('kind')}: {a.get('config_id')} {a.get('detail')}", style="bold red")
              for a in state.get("alarms") or []]
    return Group(head, bar, best_line, table, *alarms)


def show(run_dir: str, *, follow: bool = False, interval: float = 2.0) -> int:
    """Print the view once, or refresh it until the run reaches an end state."""
    path = Path(run_dir) / STATE_FILE
    state = load_state_yaml(path)
    if not follow:
        from rich.console import Console
        Console().print(render(state))
        return 0
    with Live(render(state), refresh_per_second=4) as live:
        while state.get("status") not in END_STATES:
            time.sleep(interval)
            try:
                state = load_state_yaml(path)
            except Exception:  # the writer replaces the file atomically; a race just waits a tick
                continue
            live.update(render(state))
    return 0

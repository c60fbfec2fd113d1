"""What `automl run` shows while it runs: a live panel on a terminal, plain lines otherwise.

On a TTY a rich Live panel (budget bar, phase, configs done, seed jobs running, best so far,
last alarms, stop reason) is redrawn twice a second; its clock ticks between state updates.
Piped or redirected (logs, CI), one line per finished config (--mode pbt: per ready point), alarm and
message is printed, never wrapped. Rejected configs print nothing (they were never trained and do not count).
`quiet` prints nothing at all. The view only reads the automl_state.yaml dict it is given.
"""
from __future__ import annotations

import math
import time

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from automl.core.record import Kind

TUNING_KINDS = Kind.TUNING  # every kind but the re-checks (held-out, test): joint configs count too
NOT_DONE = ("rejected", "running")
MAX_ALARMS = 3


def fmt_duration(seconds) -> str:
    """41s, 2m06s, 12h00m: compact, exact to the second under an hour."""
    s = max(0, int(round(seconds or 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_score(score: dict | None) -> str:
    """'mean 0.612 [0.550, 0.670] n=2' (or '' without a score)."""
    if not score or score.get("mean") is None:
        return ""
    text = f"mean {score['mean']:.3f}"
    ci = score.get("ci95")
    if ci and len(ci) == 2 and None not in ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    if score.get("n_seeds") is not None:
        text += f" n={score['n_seeds']}"
    return text


def phase_text(state: dict) -> str:
    """'hp · cycle 1 · stage 2', 'heldout · stage 5', 'plan' from state['stage']."""
    stage = state.get("stage") or {}
    parts = [str(stage.get("kind") or "starting")]
    if stage.get("kind") in TUNING_KINDS and stage.get("cycle"):
        parts.append(f"cycle {stage['cycle']}")
    if stage.get("index"):
        parts.append(f"stage {stage['index']}")
    return " · ".join(parts)


def _budget(state: dict, tick_s: float = 0.0) -> tuple[float, float, float]:
    """(elapsed, total, left) seconds; tick_s = time since the state was taken (running only)."""
    b = state.get("budget") or {}
    elapsed, left = float(b.get("elapsed_s") or 0.0), float(b.get("remaining_s") or 0.0)
    if state.get("status", "running") == "running":
        elapsed, left = elapsed + tick_s, max(0.0, left - tick_s)
    total = float(b["hours"]) * 3600.0 if b.get("hours") else elapsed + left
    return elapsed, total, left


def _done_counts(state: dict) -> tuple[int, dict, int]:
    """(finished tuning configs, their non-complete states counted, rejected configs)."""
    done, rejected = 0, 0
    other: dict = {}
    for e in state.get("trials") or []:
        if e.get("kind") not in TUNING_KINDS:
            continue
        st = e.get("state")
        if st == "rejected":
            rejected += 1
        elif st not in NOT_DONE:
            done += 1
            if st != "complete":
                other[st] = other.get(st, 0) + 1
    return done, other, rejected


def _configs_done(state: dict, planned_configs: int | None) -> str:
    """'3/8 done (1 pruned), 1 rejected'."""
    done, other, rejected = _done_counts(state)
    configs = f"{done}/{planned_configs}" if planned_configs else str(done)
    extra = ", ".join(f"{n} {s}" for s, n in sorted(other.items()))
    configs += f" done ({extra})" if extra else " done"
    return configs + (f", {rejected} rejected" if rejected else "")


def _ready_progress(pop: dict) -> str:
    """'ready point 3/9 (step 30720)' of a --mode pbt population."""
    s, ready = pop.get("settings") or {}, pop.get("ready") or []
    planned = s["total_steps"] // s["ready_steps"] if s.get("ready_steps") and s.get("total_steps") else None
    text = f"ready point {len(ready)}/{planned}" if planned else f"ready point {len(ready)}"
    return text + (f" (step {ready[-1]['steps']})" if ready else "")


def _leader(ready: dict) -> int | None:
    """The member with the best finite value at a ready point (the lowest id on ties)."""
    ranked = [(v, -i) for i, v in enumerate(ready["scores"]) if v is not None and math.isfinite(v)]
    return -max(ranked)[1] if ranked else None


def pbt_best(state: dict) -> str | None:
    """'pbt winner m1 0.701 at step 30720' (or 'pbt best ...' while it trains) from the state's ``pbt``
    section; None before a ready point with a value."""
    pop = state.get("pbt") or {}
    if not pop.get("ready"):
        return None
    last, winner = pop["ready"][-1], pop.get("winner")
    member = winner if winner is not None else _leader(last)
    if member is None:
        return None
    return f"pbt {'winner' if winner is not None else 'best'} m{member} {last['scores'][member]:.3f} " \
           f"at step {last['steps']}"


def pbt_ready_line(pop: dict, state: dict | None) -> str:
    """One line per ready point of --mode pbt: every member's value, the copies (a bottom member takes a
    top one's state, then explores its values) and the best, e.g.
    '[ 2m06s/20m00s] pbt ready 3/9 step 30720: m0 0.612 m1 0.701 m2 0.300 | exploit+explore m2<-m1 | best m1 0.701'."""
    ready = pop["ready"][-1]
    head = _clock(state)
    s = pop.get("settings") or {}
    planned = f"/{s['total_steps'] // s['ready_steps']}" if s.get("ready_steps") and s.get("total_steps") else ""
    values = " ".join(f"m{i} {'failed' if v is None else f'{v:.3f}'}" for i, v in enumerate(ready["scores"]))
    copies = ready.get("copies") or []
    action = ("exploit+explore " + ", ".join(f"m{c['dst']}<-m{c['src']}" for c in copies) if copies
              else "no copy (gaps within noise)")
    leader = _leader(ready)
    best = f" | best m{leader} {ready['scores'][leader]:.3f}" if leader is not None else ""
    return f"{head}pbt ready {ready['index']}{planned} step {ready['steps']}: {values} | {action}{best}"


def _clock(state: dict | None) -> str:
    """'[   41s/2m06s] ' from the state's budget ('' without one)."""
    if not state or not state.get("budget"):
        return ""
    elapsed, total, _ = _budget(state)
    return f"[{fmt_duration(elapsed):>6}/{fmt_duration(total)}] "


def render(state: dict | None, *, running_jobs: int = 0, planned_configs: int | None = None,
           tick_s: float = 0.0, width: int = 80) -> Panel:
    """The live panel for one state dict (a renderable; missing keys are shown as unknown)."""
    state = state or {}
    elapsed, total, left = _budget(state, tick_s)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    bar = Table.grid(padding=(0, 1))
    bar.add_column(width=max(10, width - 44))
    bar.add_column(no_wrap=True)
    bar.add_row(ProgressBar(total=max(total, 1e-9), completed=min(elapsed, total)),
                f"{fmt_duration(elapsed)}/{fmt_duration(total)}  {fmt_duration(left)} left")
    grid.add_row("budget", bar)
    grid.add_row("phase", phase_text(state))
    if state.get("pbt"):
        grid.add_row("members", f"{_ready_progress(state['pbt'])} · {running_jobs} jobs running")
    else:
        grid.add_row("configs", f"{_configs_done(state, planned_configs)} · {running_jobs} seed jobs running")
    best = state.get("best")
    grid.add_row("best", f"{best.get('config_id')}  {fmt_score(best.get('score'))}" if best
                 else pbt_best(state) or "none yet")
    alarms = state.get("alarms") or []
    for i, a in enumerate(alarms[-MAX_ALARMS:]):
        label = "alarms" if i == 0 else ""
        grid.add_row(label, Text(f"{a.get('kind')} {a.get('config_id')}: {a.get('detail', '')}", style="red"))
    if len(alarms) > MAX_ALARMS:
        grid.add_row("", f"(+{len(alarms) - MAX_ALARMS} earlier)")
    if state.get("stop_reason"):
        grid.add_row("stop", str(state["stop_reason"]))
    title = " · ".join(str(x) for x in ("automl", state.get("env"), state.get("status")) if x)
    return Panel(grid, title=title, title_align="left", width=width)


def _ranked_ci(h: dict) -> str:
    """'iqm 0.720 [lo, hi]': the held-out value under the run's objective (iqm in older state files)."""
    ci = h.get("ci95") or []
    objective = h.get("objective", "iqm")
    text = f"{objective} {h.get('value', h.get('iqm', float('nan'))):.3f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if len(ci) == 2 and None not in ci else "")


def summary_line(state: dict | None) -> str:
    """The final line: status, best so far, held-out winner vs the baseline, stop reason."""
    state = state or {}
    parts = [f"automl {state.get('status', 'stopped')}"]
    elapsed, total, _ = _budget(state)
    parts.append(f"{fmt_duration(elapsed)} of {fmt_duration(total)}")
    best, pbt = state.get("best"), pbt_best(state)
    if best:
        parts.append(f"best {best.get('config_id')} {fmt_score(best.get('score'))}")
    elif pbt:
        parts.append(pbt)
    else:
        parts.append("no ready point reached" if state.get("pbt") else "no config finished")
    held = state.get("heldout") or []
    if held:
        win = held[0]
        base = next((h for h in held if h.get("baseline")), None)
        text = f"held-out winner {win.get('config_id')} {_ranked_ci(win)}"
        if base is win:
            text += " (the baseline)"
        elif base:
            text += f" vs baseline {base.get('config_id')} {_ranked_ci(base)}"
        parts.append(text)
    test = state.get("test") or []
    if test:
        win, base = test[0], next((t for t in test[1:] if t.get("baseline")), None)
        text = f"test seeds: {win.get('config_id')} {_ranked_ci(win)}"
        text += " (the baseline)" if win.get("baseline") else f" vs baseline {_ranked_ci(base)}" if base else ""
        parts.append(text)
    if state.get("stop_reason"):
        parts.append(f"stop: {state['stop_reason']}")
    return " | ".join(parts)


class _Dynamic:
    """Renders the view's latest snapshot at each Live refresh, so the clock keeps ticking."""

    def __init__(self, view: "LiveView"):
        self.view = view

    def __rich_console__(self, console, options):
        state, jobs, planned, at = self.view._snap
        yield render(state, running_jobs=jobs, planned_configs=planned, tick_s=time.monotonic() - at,
                     width=min(options.max_width, 100))


class LiveView:
    """The driver's progress display; see the module docstring for what each mode prints."""

    def __init__(self, *, quiet: bool = False, console: Console | None = None, tty: bool | None = None):
        self.quiet = quiet
        self.console = console or Console()
        self.tty = self.console.is_terminal if tty is None else tty
        self._snap: tuple = (None, 0, None, time.monotonic())
        self._live: Live | None = None
        self._closed = False

    def start(self) -> None:
        """Start the live panel (TTY only)."""
        if self.quiet or not self.tty or self._live is not None:
            return
        self._live = Live(_Dynamic(self), console=self.console, refresh_per_second=2,
                          auto_refresh=True, transient=False)
        self._live.start()

    def update(self, state: dict, *, running_jobs: int = 0, planned_configs: int | None = None) -> None:
        """Take a new state dict (automl_state.yaml's content); redraws the panel on a TTY."""
        # the clock ticks from when this state was new (the same state again keeps its time)
        since = self._snap[3] if self._snap and self._snap[0] is state else time.monotonic()
        self._snap = (state, running_jobs, planned_configs, since)
        if self._live is not None:
            self._live.refresh()

    def config_done(self, entry: dict, *, state: dict | None = None) -> None:
        """One line per finished config (non-TTY); on a TTY only the panel changes."""
        if state is not None:
            _, jobs, planned, _ = self._snap
            self.update(state, running_jobs=jobs, planned_configs=planned)
        if self.quiet or self.tty or entry.get("state") == "rejected":
            return
        self._print(config_line(entry, self._snap[0]))

    def pbt_ready(self, pop: dict, *, state: dict | None = None) -> None:
        """One line per ready point of --mode pbt (non-TTY); on a TTY only the panel changes."""
        if state is not None:
            _, jobs, planned, _ = self._snap
            self.update(state, running_jobs=jobs, planned_configs=planned)
        if self.quiet or self.tty or not pop.get("ready"):
            return
        self._print(pbt_ready_line(pop, self._snap[0]))

    def alarm(self, alarm: dict) -> None:
        """'ALARM reward_hacking config_031: ...' (printed above the panel on a TTY too)."""
        if not self.quiet:
            self._print(f"ALARM {alarm.get('kind')} {alarm.get('config_id')}: {alarm.get('detail', '')}")

    def message(self, text: str) -> None:
        """A one-off line, above the live panel on a TTY."""
        if not self.quiet:
            self._print(text)

    def close(self, state: dict | None = None) -> None:
        """Stop the panel (its last frame stays on screen) and print the summary line once."""
        if state is not None:
            self._snap = (state, 0, self._snap[2], time.monotonic())
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if not self.quiet and not self._closed and self._snap[0] is not None:
            self._print(summary_line(self._snap[0]))  # (nothing to sum up before the run started)
        self._closed = True

    def _print(self, text: str) -> None:
        console = self._live.console if self._live is not None else self.console
        console.print(text, markup=False, highlight=False, soft_wrap=not self.tty)


def config_line(entry: dict, state: dict | None) -> str:
    """'[  41s/2m06s] hp#1 config_003 complete  mean 0.612 [0.550, 0.670] n=2 | best config_001 0.701'."""
    state = state or {}
    head = _clock(state)
    kind, cycle = entry.get("kind", "?"), entry.get("cycle")
    phase = f"{kind}#{cycle}" if kind in TUNING_KINDS and cycle else str(kind)
    result = fmt_score(entry.get("score")) or "no score"
    if entry.get("reason"):
        result += f" ({entry['reason']})"
    line = f"{head}{phase} {entry.get('config_id')} {entry.get('state')}  {result}"
    best = state.get("best")
    if best and (best.get("score") or {}).get("mean") is not None:
        line += f" | best {best['config_id']} {best['score']['mean']:.3f}"
    return line

"""Known-answer tests for automl.run.live: the TTY panel's text and the plain per-config lines."""
from __future__ import annotations

import copy
import io

import pytest
from rich.console import Console

from automl.run.live import LiveView, config_line, fmt_duration, render, summary_line


def _score(mean, lo, hi, n=2):
    return {"mean": mean, "iqm": mean, "ci95": [lo, hi], "n_seeds": n}


def _entry(cid, state, kind="hp", cycle=1, score=None, reason=None):
    e = {"config_id": cid, "kind": kind, "cycle": cycle, "state": state, "params": {},
         "reward_weights": {}, "seeds": []}
    if score:
        e["score"] = score
    if reason:
        e["reason"] = reason
    return e


ALARM = {"kind": "reward_hacking", "config_id": "config_031",
         "detail": "shaped return +25% (both under its weights), true metric -30% vs incumbent config_001"}


@pytest.fixture
def state():
    """hp cycle 1 of a 126 s budget at 41 s: 3 tuning configs finished (one pruned), one
    rejected, one running; a held-out entry that must not count."""
    return {
        "version": 1, "status": "running", "env": "navigation",
        "budget": {"hours": 0.035, "elapsed_s": 41.0, "remaining_s": 85.0,
                   "deadline": "2025-01-01T00:02:06Z", "reserve_s": 20.0},
        "stage": {"index": 2, "kind": "hp", "cycle": 1},
        "best": {"config_id": "config_001", "params": {}, "reward_weights": {},
                 "score": _score(0.701, 0.65, 0.75)},
        "trials": [_entry("config_000", "complete", score=_score(0.5, 0.4, 0.6)),
                   _entry("config_001", "complete", score=_score(0.701, 0.65, 0.75)),
                   _entry("config_002", "pruned", reason="pruned at eval 2"),
                   _entry("config_003", "rejected", reason="constraint"),
                   _entry("config_004", "running"),
                   _entry("config_900", "complete", kind="heldout", cycle=0, score=_score(0.9, 0.8, 1.0))],
        "alarms": [ALARM], "stop_reason": None, "heldout": None, "plan": {"hp_trials": 8},
    }


def _text(renderable, width=80):
    console = Console(record=True, width=width, force_terminal=True)
    console.print(renderable)
    return console.export_text()


def test_durations():
    assert [fmt_duration(s) for s in (0, 41, 126, 3599, 43200)] == ["0s", "41s", "2m06s", "59m59s", "12h00m"]


def test_panel_shows_budget_phase_counts_best_and_alarm(state):
    text = _text(render(state, running_jobs=2, planned_configs=8))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines) and len(lines) <= 12
    assert "41s/2m06s" in text and "1m25s left" in text          # 0.035 h = 126 s, 85 s left
    assert "hp · cycle 1 · stage 2" in text
    assert "3/8 done (1 pruned), 1 rejected" in text             # held-out and running not counted
    assert "2 seed jobs running" in text
    assert "config_001  mean 0.701 [0.650, 0.750] n=2" in text
    flat = " ".join(text.split())                                  # the alarm wraps inside the panel
    assert "reward_hacking config_031: shaped return +25%" in flat
    assert "true metric -30% vs incumbent config_001" in flat
    assert "navigation" in text and "running" in text


def test_panel_ticks_and_shows_stop_reason(state):
    state["stop_reason"] = "deadline for tuning"
    text = _text(render(state, running_jobs=0, tick_s=10.0))
    assert "51s/2m06s" in text and "1m15s left" in text           # the clock ran on 10 s
    assert "3 done" in text and "/8" not in text                   # no plan given: count only
    assert "stop    deadline for tuning" in text


def test_panel_of_an_early_state():
    text = _text(render({"status": "running", "stage": {"index": 0, "kind": "plan", "cycle": 0},
                         "budget": {"hours": 1.0, "elapsed_s": 3.0, "remaining_s": 3597.0}}))
    assert "plan" in text and "0 done" in text and "none yet" in text and "3s/1h00m" in text
    assert "alarms" not in text
    assert "none yet" in _text(render(None))


def _started_view(state, *, tty: bool):
    """A LiveView on an 80-column in-memory console, started and given `state`."""
    out = io.StringIO()
    view = LiveView(console=Console(file=out, force_terminal=tty, width=80))
    assert view.tty is tty
    view.start()
    view.update(state, running_jobs=2, planned_configs=8)
    return view, out


def test_plain_lines_one_per_finished_config(state):
    view, out = _started_view(state, tty=False)
    for e in state["trials"][:4]:              # 3 finished + 1 rejected (no line)
        view.config_done(e)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0] == ("[   41s/2m06s] hp#1 config_000 complete  mean 0.500 [0.400, 0.600] n=2"
                        " | best config_001 0.701")
    assert "config_001 complete  mean 0.701 [0.650, 0.750] n=2" in lines[1]
    assert "hp#1 config_002 pruned  no score (pruned at eval 2)" in lines[2]


def test_plain_alarm_message_and_summary(state):
    out = io.StringIO()
    view = LiveView(console=Console(file=out, force_terminal=False, width=40))
    view.message("calibrating...")
    view.alarm(ALARM)
    end = copy.deepcopy(state)
    end.update(status="complete", stop_reason=None,
               heldout=[{"config_id": "config_001", "iqm": 0.72, "mean": 0.7, "baseline": False},
                        {"config_id": "config_000", "iqm": 0.55, "mean": 0.5, "baseline": True}])
    view.close(end)
    view.close(end)                            # idempotent: one summary line
    lines = out.getvalue().splitlines()        # never wrapped, even on a 40-column console
    assert lines == [
        "calibrating...",
        f"ALARM reward_hacking config_031: {ALARM['detail']}",
        "automl complete | 41s of 2m06s | best config_001 mean 0.701 [0.650, 0.750] n=2 | "
        "held-out winner config_001 iqm 0.720 vs baseline config_000 iqm 0.550"]


def test_summary_when_the_baseline_wins_and_nothing_finished():
    held = [{"config_id": "config_000", "iqm": 0.6, "baseline": True}]
    assert "held-out winner config_000 iqm 0.600 (the baseline)" in summary_line({"heldout": held})
    assert "no config finished" in summary_line(None)
    assert config_line(_entry("config_007", "failed", reason="nan loss"), None) == \
        "hp#1 config_007 failed  no score (nan loss)"


def test_quiet_prints_nothing(state):
    out = io.StringIO()
    for tty in (False, True):
        view = LiveView(quiet=True, console=Console(file=out, force_terminal=tty), tty=tty)
        view.start()
        view.update(state, running_jobs=1)
        view.config_done(state["trials"][0], state=state)
        view.alarm(ALARM)
        view.message("hello")
        view.close(state)
    assert out.getvalue() == ""


def test_tty_live_panel_messages_and_final_frame(state):
    view, out = _started_view(state, tty=True)
    view.config_done(state["trials"][0])       # TTY: no extra line, the panel shows it
    view.message("tuning over: deadline")
    done = dict(state, status="complete")
    view.close(done)
    text = out.getvalue()
    assert "tuning over: deadline" in text
    assert "hp#1 config_000" not in text
    assert "automl · navigation · complete" in text                 # last frame stays on screen
    assert text.rstrip().endswith("n=2")                            # summary after the panel
    assert "automl complete | 41s of 2m06s | best config_001" in text


def test_a_joint_run_counts_its_finished_configs_and_names_their_phase(state):
    """--mode joint: its configs are tuning configs (the panel once counted 0 of them, issue 26)."""
    for e in state["trials"]:
        if e["kind"] == "hp":
            e["kind"] = "joint"
    state["stage"] = {"index": 1, "kind": "joint", "cycle": 1}
    text = _text(render(state, running_jobs=2, planned_configs=8))
    assert "3/8 done (1 pruned), 1 rejected" in text and "joint · cycle 1 · stage 1" in text
    view, out = _started_view(state, tty=False)
    view.config_done(state["trials"][0])
    assert out.getvalue().splitlines() == [
        "[   41s/2m06s] joint#1 config_000 complete  mean 0.500 [0.400, 0.600] n=2 | best config_001 0.701"]


def _pbt_state(status="running", winner=None):
    """A --mode pbt state: 4 members, 2 of 9 ready points (every 2048 steps), member 3 failed at the second
    one, member 2 copied member 1 there (a gap beyond the noise); member 1 leads."""
    ready = [{"index": 1, "steps": 2048, "scores": [0.5, 0.6, 0.2, 0.4], "copies": [], "failed": {}},
             {"index": 2, "steps": 4096, "scores": [0.55, 0.701, 0.3, None],
              "copies": [{"dst": 2, "src": 1, "gap": 0.401, "noise": 0.05}], "failed": {3: "nan loss"}}]
    return {"version": 1, "status": status, "env": "navigation", "best": None, "trials": [],
            "budget": {"hours": 0.035, "elapsed_s": 41.0, "remaining_s": 85.0},
            "stage": {"index": 1, "kind": "pbt", "cycle": 0},
            "pbt": {"settings": {"population": 4, "ready_steps": 2048, "total_steps": 18432},
                    "ready": ready, "winner": winner}}


def test_pbt_prints_one_line_per_ready_point_and_a_summary_with_its_best_member():
    """--mode pbt piped to a file printed nothing between calibration and the replay, and its summary said
    'no config finished' (issue 26 defect 7)."""
    state = _pbt_state()
    view, out = _started_view(state, tty=False)
    first = copy.deepcopy(state["pbt"])
    first["ready"] = first["ready"][:1]
    view.pbt_ready(first)
    view.pbt_ready(state["pbt"], state=state)
    assert out.getvalue().splitlines() == [
        "[   41s/2m06s] pbt ready 1/9 step 2048: m0 0.500 m1 0.600 m2 0.200 m3 0.400 | no copy (gaps within noise)"
        " | best m1 0.600",
        "[   41s/2m06s] pbt ready 2/9 step 4096: m0 0.550 m1 0.701 m2 0.300 m3 failed | exploit+explore m2<-m1"
        " | best m1 0.701"]
    assert summary_line(state) == "automl running | 41s of 2m06s | pbt best m1 0.701 at step 4096"
    end = _pbt_state("finished", winner=1)
    end["test"] = [{"config_id": "pbt_m1", "iqm": 0.8, "baseline": False},
                   {"config_id": "baseline", "iqm": 0.6, "baseline": True}]
    assert summary_line(end) == ("automl finished | 41s of 2m06s | pbt winner m1 0.701 at step 4096 | "
                                 "test seeds: pbt_m1 iqm 0.800 vs baseline iqm 0.600")
    text = _text(render(state, running_jobs=2))
    assert "ready point 2/9 (step 4096) · 2 jobs running" in text and "pbt best m1 0.701 at step 4096" in text
    early = _pbt_state()
    early["pbt"]["ready"] = []
    assert "no ready point reached" in summary_line(early)


def test_pbt_ready_points_print_nothing_on_a_tty_or_when_quiet():
    state = _pbt_state()
    tty_view, tty_out = _started_view(state, tty=True)
    quiet_out = io.StringIO()
    quiet_view = LiveView(quiet=True, console=Console(file=quiet_out, width=80))
    for view in (tty_view, quiet_view):
        view.pbt_ready(state["pbt"], state=state)
    assert "pbt ready" not in tty_out.getvalue() and "ready point 2/9" in tty_out.getvalue()  # the panel shows it
    tty_view.close()
    assert quiet_out.getvalue() == ""

"""The command line as a user runs it: validate, export, status, train, signals, exit codes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _cli import ROOT, TINY, automl, state


def children(pid):
    """Worker processes of `pid` (Linux /proc)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    # Independent of machine speed: trial length and evaluation schedule fixed by flags, and a
    # budget far above what the run needs (~20 s), so held-out training is never cut short; the
    # run does not grow with the budget (trials are not shrunk, so the last phase is not extended).
    r = automl("--mode", "hp", "--env", "cartpole", "--ladder", "off", "--space", TINY, "--budget-hours", "0.25",
               "--hp-trials", "2", "--seeds", "2", "--top-k", "1", "--n-jobs", "2",
               "--trial-steps", "4096", "--eval-every", "2048", "--eval-episodes", "8",
               "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr
    st = state(run_dir)
    assert st["status"] == "finished" and st["plan"]["shrunk"] is False, st["plan"]
    held = [t for t in st["trials"] if t["kind"] == "heldout"]
    assert sorted(t["config_id"] for t in held) == ["config_000", "config_001"], held  # top-1 and baseline
    assert all(t["state"] == "complete" and len(t["seeds"]) == 2 for t in held), held
    return run_dir


def test_validate_summarizes_a_good_space():
    r = automl("validate", str(ROOT / "configs" / "spaces" / "navigation.yaml"))
    assert r.returncode == 0, r.stderr
    assert "learning_rate" in r.stdout and "loguniform" in r.stdout


@pytest.mark.parametrize("body,needle", [
    ("search_space_id: x\nsearchable:\n  learning_rate: {type: loguniform, low: 1e-2, high: 1e-3}\n", "low"),
    ("search_space_id: x\nsearchable:\n  learnin_rate: {type: uniform, low: 0, high: 1}\n", "learning_rate"),
    ("search_space_id: x\nsearchable: [unclosed\n", "x.yaml"),
])
def test_validate_bad_file_is_one_line_exit_2(tmp_path, body, needle):
    f = tmp_path / "x.yaml"
    f.write_text(body)
    r = automl("validate", str(f))
    assert r.returncode == 2 and needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_export_yaml_and_rlzoo(finished_run):
    r = automl("export", "--run-dir", str(finished_run), "--format", "rlzoo")
    assert r.returncode == 0, r.stderr
    zoo = yaml.safe_load((finished_run / "rlzoo_hyperparams.yml").read_text())
    hp = zoo["automl/CartPole-v0"]  # the registered gymnasium id, as rl-zoo3 needs
    best = yaml.safe_load((finished_run / "best.yaml").read_text())
    assert hp["n_steps"] == best["sb3"]["ppo_kwargs"]["n_steps"] and hp["n_envs"] == 32
    assert hp["n_timesteps"] == best["sb3"]["n_timesteps"] and isinstance(hp["n_timesteps"], int)
    assert hp["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    r = automl("export", "--run-dir", str(finished_run), "--format", "yaml")
    assert r.returncode == 0, r.stderr
    exported = yaml.safe_load((finished_run / "best_config.yaml").read_text())
    assert exported["params"] == best["params"] and exported["env"] == "cartpole"


def test_train_reruns_the_exported_config(finished_run, tmp_path):
    exported = finished_run / "best_config.yaml"
    if not exported.exists():
        assert automl("export", "--run-dir", str(finished_run)).returncode == 0
    r = automl("train", "--config", str(exported), "--env", "cartpole", "--seed-list", "5",
               "--trial-steps", "2048", "--run-dir", str(tmp_path / "t"))
    assert r.returncode == 0, r.stderr
    res = yaml.safe_load((tmp_path / "t" / "results.yaml").read_text())
    assert [s["seed"] for s in res["seeds"]] == [5] and res["seeds"][0]["steps"] >= 2048


def test_status_prints_the_run(finished_run):
    r = automl("status", "--run-dir", str(finished_run))
    assert r.returncode == 0, r.stderr
    st = state(finished_run)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("finished  env=cartpole  stage=test#0  budget "), lines[0]
    best = st["best"]
    assert sum(f"best: {best['config_id']}  mean={best['score']['mean']:.3g}  " in ln for ln in lines) == 1, lines
    # the trials table: one row per trial of the state file, in order, with its kind, state, seeds, mean
    head = [[c.strip() for c in ln.strip("┃ ").split("┃")] for ln in lines if ln.startswith("┃")]
    assert head == [["config", "kind", "cycle", "state", "seeds", "mean", "ci95"]], head
    rows = [[c.strip() for c in ln.strip("│ ").split("│")] for ln in lines if ln.startswith("│")]
    expected = [[t["config_id"], t["kind"], str(t["cycle"]), t["state"], str(len(t["seeds"])),
                 f"{t['score']['mean']:.3g}"] for t in st["trials"]]
    assert [row[:6] for row in rows] == expected
    assert [row[1] for row in rows] == ["hp", "hp", "heldout", "heldout", "test", "test"]


def test_status_and_export_without_a_run_are_one_line(tmp_path):
    for args in (["status"], ["export"], ["analyze"]):
        r = automl(*args, "--run-dir", str(tmp_path / "none"))
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def _start_and_wait_for_workers(run_dir):
    proc = subprocess.Popen([sys.executable, "-m", "automl", "--mode", "hp", "--env", "cartpole", "--ladder", "off",
                             "--space", TINY, "--budget-hours", "0.05", "--hp-trials", "6",
                             "--seeds", "2", "--n-jobs", "2", "--trial-steps", "8192",
                             "--run-dir", str(run_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(children(proc.pid)) >= 2 and (run_dir / "events.jsonl").exists() and \
                '"seed_done"' in (run_dir / "events.jsonl").read_text():
            return proc
        time.sleep(0.3)
    proc.kill()
    pytest.fail("the run never got going")


def test_sigterm_flushes_state_and_stops_workers(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start_and_wait_for_workers(run_dir)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    st = yaml.safe_load((run_dir / "automl_state.yaml").read_text())
    assert st["status"] == "interrupted"
    assert _survivors(workers) == []


def _survivors(workers, ceiling_s=60.0):
    """The workers still alive once all have died or `ceiling_s` has passed (a generous ceiling: a loaded
    machine may take a while to reap them; a fast one returns at once)."""
    deadline = time.monotonic() + ceiling_s
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    return [w for w in workers if alive(w)]


def test_workers_die_with_a_killed_driver(tmp_path):
    proc = _start_and_wait_for_workers(tmp_path / "run")
    workers = children(proc.pid)
    assert len(workers) >= 2
    proc.kill()
    proc.wait()
    assert _survivors(workers) == []


# Issue 11.2: an empty, blank or comment-only YAML is refused by every command that reads one.
EMPTY_YAML = {"empty": ("", "file: empty (allowed: "), "blank": ("  \n\t\n\n", "file: empty (allowed: "),
              "comment only": ("# nothing here yet\n", "file: empty (only comments or null) (allowed: ")}
YAML_COMMANDS = {  # what the message's "allowed:" names for each reader
    "validate": (["validate", "{f}"], "a search space (keys search_space_id"),
    "--space": (["--space", "{f}", "--env", "cartpole", "--dry-run"], "a search-space mapping with keys"),
    "--preset": (["--preset", "{f}", "--env", "cartpole", "--dry-run"], "a preset mapping with keys"),
    "--rewards": (["--rewards", "{f}", "--env", "cartpole", "--dry-run"], "a reward-terms mapping"),
    "train --config": (["train", "--config", "{f}", "--env", "cartpole"], "a search space, a best.yaml"),
}


def _yaml_command(command, path, run_dir):
    args, allowed = YAML_COMMANDS[command]
    return [a.format(f=path) for a in args] + ["--run-dir", str(run_dir)] * (command != "validate"), allowed


@pytest.mark.parametrize("body", list(EMPTY_YAML))
@pytest.mark.parametrize("command", list(YAML_COMMANDS))
def test_empty_yaml_is_one_line_for_every_reader(tmp_path, capsys, command, body):
    from automl.cli.main import main

    text, problem = EMPTY_YAML[body]
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    args, allowed = _yaml_command(command, path, tmp_path / "run")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"automl: error: {path}: {problem}{allowed}")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", list(YAML_COMMANDS))
def test_comment_only_yaml_exits_2_with_one_line_from_the_shell(tmp_path, command):
    path = tmp_path / "empty.yaml"
    path.write_text("# search space: to be written\n")
    args, allowed = _yaml_command(command, path, tmp_path / "run")
    r = automl(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(f"automl: error: {path}: file: empty (only comments or null) (allowed: {allowed}")
    assert r.stdout == ""

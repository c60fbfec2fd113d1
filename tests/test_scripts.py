"""scripts/automl.py, analyze.py, train.py: the seed's `uv run scripts/...` spellings of the same CLI (issue 11.10)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
# script -> (args, what its help must show: the subcommand's usage line and its flags)
HELP = {
    "automl.py": (["--help"], ["usage: automl [-h] {run,validate,train,tune,analyze,status,export}"]),
    "analyze.py": (["--help"], ["usage: automl analyze", "--metric", "--sort {descending,ascending}"]),
    "train.py": (["--help"], ["usage: automl train", "--config CONFIG", "--seed-list"]),
}
RUN_HELP = (["--mode", "stage", "--help"], ["usage: automl run", "--budget-hours", "--reward-generations"])


def _run(python, script, args, cwd, env=None):
    return subprocess.run([str(python), str(SCRIPTS / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def _check(r, needles):
    assert r.returncode == 0, r.stderr
    for needle in needles:
        assert needle in r.stdout, (needle, r.stdout[:400])


@pytest.mark.parametrize("script", list(HELP))
def test_help_shows_the_subcommands_flags_from_any_directory(tmp_path, script):
    args, needles = HELP[script]
    _check(_run(sys.executable, script, args, tmp_path), needles)


def test_automl_script_runs_the_default_run_subcommand(tmp_path):
    _check(_run(sys.executable, "automl.py", RUN_HELP[0], tmp_path), RUN_HELP[1])


def test_arguments_reach_the_cli_unchanged(tmp_path):
    """Same one-line error and exit code as `python -m automl train ...`: the subcommand is prepended, no more."""
    missing = tmp_path / "missing.yaml"
    r = _run(sys.executable, "train.py", ["--config", str(missing), "--env", "cartpole"], tmp_path)
    direct = subprocess.run([sys.executable, "-m", "automl", "train", "--config", str(missing), "--env", "cartpole"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (direct.returncode, direct.stderr) == (
        2, f"automl: error: {missing}: file: does not exist (allowed: a readable YAML file)\n")


def test_scripts_work_from_a_clone_where_the_package_is_not_installed(tmp_path):
    """A venv that sees the dependencies but not the (editable) automl install: the scripts find the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # a path line, not a site dir: the deps import, the editable install's own .pth is not processed
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", "import yaml, automl"], cwd=tmp_path, capture_output=True, text=True)
    assert "No module named 'automl'" in probe.stderr  # the precondition: not installed here
    for script, (args, needles) in HELP.items():
        _check(_run(python, script, args, tmp_path), needles)
    _check(_run(python, "automl.py", RUN_HELP[0], tmp_path), RUN_HELP[1])


@pytest.mark.parametrize("script", list(HELP))
def test_uv_run_in_the_project(script):
    """`uv run scripts/X.py` as the seed writes it. --no-sync uses this venv as the project env, unchanged;
    without it uv syncs the env from pyproject.toml first (checked by hand on a fresh copy)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": sys.prefix}
    r = subprocess.run([uv, "run", "--no-sync", f"scripts/{script}", *HELP[script][0]], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    _check(r, HELP[script][1])

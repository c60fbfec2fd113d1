"""Run the `automl` command as a user does (a subprocess from the repo root)."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "data" / "tiny_cartpole.yaml")


def automl(*args, timeout=600):
    """`python -m automl ARGS`, captured."""
    return subprocess.run([sys.executable, "-m", "automl", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def state(run_dir):
    """The run's automl_state.yaml as a dict."""
    return yaml.safe_load((Path(run_dir) / "automl_state.yaml").read_text())

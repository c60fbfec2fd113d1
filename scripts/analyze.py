#!/usr/bin/env python
"""`automl analyze ARGS` as a script: `uv run scripts/analyze.py --metric episode_reward_mean --sort descending`.

The same command line as the `automl` console script (automl.cli.main), nothing re-implemented.
Works from the installed venv, or from a clone where the package is not installed.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The script's own folder comes first on sys.path; drop it, or `import automl` would find scripts/automl.py.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
try:
    from automl.cli import main
except ImportError:  # not installed: use the package of this checkout
    sys.path.insert(0, str(HERE.parent))
    from automl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["analyze", *sys.argv[1:]]))

"""Shared by the scripts in this folder: run `automl.cli.main.main` with a subcommand in front.

The scripts are the seed's spellings (`uv run scripts/automl.py ...`) of the same command line as
the `automl` console script; nothing is re-implemented. Works from the installed venv, or from a
clone where the package is not installed.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(*subcommand: str) -> int:
    """`automl SUBCOMMAND ARGS` with this process's ARGS."""
    # The scripts' folder comes first on sys.path; drop it, or `import automl` would find scripts/automl.py.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    try:
        from automl.cli.main import main
    except ImportError:  # not installed: use the package of this checkout
        sys.path.insert(0, str(HERE.parent))
        from automl.cli.main import main
    return main([*subcommand, *sys.argv[1:]])

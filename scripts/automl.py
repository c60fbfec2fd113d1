#!/usr/bin/env python
"""`automl ARGS` as a script, as the seed writes it: `uv run scripts/automl.py --mode stage ...`.

The same command line as the `automl` console script (automl.cli.main.main), nothing re-implemented.
"""
import _entry

if __name__ == "__main__":
    raise SystemExit(_entry.run())

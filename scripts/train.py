#!/usr/bin/env python
"""`automl train ARGS` as a script: `uv run scripts/train.py --config FILE --env ...`.

The same command line as the `automl` console script (automl.cli.main.main), nothing re-implemented.
"""
import _entry

if __name__ == "__main__":
    raise SystemExit(_entry.run("train"))

#!/usr/bin/env python
"""`automl analyze ARGS` as a script: `uv run scripts/analyze.py --metric episode_reward_mean --sort descending`.

The same command line as the `automl` console script (automl.cli.main.main), nothing re-implemented.
"""
import _entry

if __name__ == "__main__":
    raise SystemExit(_entry.run("analyze"))

"""Command line: parses flags, dispatches subcommands, prints AutoMLError as one line (exit 2)."""
import sys


def main(argv=None) -> int:
    """Entry point of the `automl` console script."""
    print("automl: not implemented yet", file=sys.stderr)
    return 2

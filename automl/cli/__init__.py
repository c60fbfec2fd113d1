"""The command line: ``automl`` (``main``: argparse → RunConfig, the subcommands) and the commands
that are not a run: ``validate``, ``train`` (re-train an exported config), ``status``, ``export``.
The top layer: may import every other layer. Read-only commands (status, export, analyze) import
no run setup and no torch.
"""

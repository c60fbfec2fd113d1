"""The one project exception: a message fit for a user, turned into exit code 2 by the CLI."""


class AutoMLError(Exception):
    """A user-facing error: one line naming the file, the key and what is allowed."""

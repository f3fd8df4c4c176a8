"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class SeqgapError(ValueError):
    """A problem with the user's request (unknown name, impossible size, bad config)."""

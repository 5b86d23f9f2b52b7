"""The one exception type the CLI turns into a one-line message."""


class GankitError(Exception):
    """A user-facing error: bad input, a missing file, an unknown option. Printed on one line."""

"""Exceptions that the command line turns into one clear line and an exit code.

Example:
    >>> from neucf.errors import DataError
    >>> str(DataError("u.data line 3: rating 'x' is not a number"))
    "u.data line 3: rating 'x' is not a number"
"""


class NeucfError(Exception):
    """Base class of every error neucf raises on purpose; its message is meant for a user."""

    exit_code = 1


class DataError(NeucfError, ValueError):
    """The data cannot be used as given: malformed file, unknown id, impossible split (exit 1)."""

    exit_code = 1


class UsageError(NeucfError, ValueError):
    """The request itself is wrong: bad option value, unknown dataset name (exit 2)."""

    exit_code = 2


class TrainingError(NeucfError, RuntimeError):
    """Training cannot go on, e.g. the loss became NaN (exit 1)."""

    exit_code = 1

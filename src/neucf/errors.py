"""Exceptions that the command line turns into one clear line and an exit code.

Example:
    >>> from neucf.errors import DataError
    >>> str(DataError("u.data line 3: rating 'x' is not a number"))
    "u.data line 3: rating 'x' is not a number"
"""

from contextlib import contextmanager


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


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM arrived: the command stops, cleaning up as it unwinds.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it. ``written``
    says what was kept, if anything (e.g. tuning results of the finished trials).

    Example:
        >>> import signal
        >>> Interrupted(signal.SIGTERM).exit_code
        143
    """

    def __init__(self, signum: int, written: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + int(signum)
        self.written = written

    @property
    def line(self) -> str:
        """The one line a user sees."""
        import signal

        what = "interrupted" if self.signum == signal.SIGINT else "terminated"
        return f"{what}; {self.written or 'nothing was written'}"


def raise_interrupted(signum, frame):
    """A signal handler that raises :class:`Interrupted`, so the program unwinds and cleans up."""
    raise Interrupted(signum)


@contextmanager
def on_stop_signals(handler):
    """Call ``handler(signum, frame)`` on SIGINT and SIGTERM while the block runs, then restore
    the caller's handlers. Outside the main thread signals cannot be set: they stay as they are.

    Example:
        >>> import signal
        >>> with on_stop_signals(lambda signum, frame: None):
        ...     signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        True
    """
    import signal

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        previous = {}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""Exceptions that the command line turns into one clear line and an exit code.

Examples:
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

    Examples:
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


class StopSignals:
    """The command line's SIGINT and SIGTERM handler: while the work runs, a signal raises
    :class:`Interrupted` (the program unwinds, removing what it had half-written); once the
    work is done (:meth:`done`, called as an output is committed, or when a command
    returns), a signal is only noted (``late``), so that a complete output is never reported
    as lost and no traceback comes from code that runs after the work (restoring handlers,
    ``atexit`` callbacks).

    Examples:
        >>> import signal
        >>> stop = StopSignals()
        >>> stop.done("wrote runs/u1"); stop(signal.SIGTERM, None)
        >>> stop.late == signal.SIGTERM, stop.written
        (True, 'wrote runs/u1')
    """

    def __init__(self):
        self.written: str | None = None
        self.finished = False
        self.late: int | None = None
        self._said = False

    def __call__(self, signum, frame):
        if self.finished or self.written is not None:
            self.late = signum
            return
        raise Interrupted(signum)

    def say_late(self) -> None:
        """Say, once, on stderr that a signal came after the work was done (if one came)."""
        import signal
        import sys

        if self.late is None or self._said:
            return
        self._said = True
        what = "interrupted" if self.late == signal.SIGINT else "terminated"
        print(f"{what} after the work was done: {self.written or 'the command had finished'}", file=sys.stderr)

    def done(self, written: str | None = None) -> None:
        """The work is complete (``written`` says what it wrote, if anything): later signals are noted."""
        if written is not None:
            self.written = written
        else:
            self.finished = True


def stop_handler():
    """The :class:`StopSignals` handling SIGINT now, or None (outside the command line)."""
    import signal

    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, StopSignals) else None


@contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM back while the block runs (a commit: a rename and the note that
    it happened), delivering them after it; where signals cannot be masked (not the main thread,
    or no ``pthread_sigmask``) the block runs as it is.

    Examples:
        >>> with signals_held(): pass
    """
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def on_stop_signals(handler):
    """Call ``handler(signum, frame)`` on SIGINT and SIGTERM while the block runs, then restore
    the caller's handlers. Outside the main thread signals cannot be set: they stay as they are.

    Examples:
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

"""``python -m neucf`` and the ``neucf`` script: the command line (as ``torchrun -m neucf`` runs it).

The signal handler is installed before the heavy imports (torch, pandas), so Ctrl-C or
SIGTERM during start-up also ends with one line instead of a traceback. Once the command
returns, the process ends without the interpreter's own shutdown (see :func:`leave`), so a
signal that arrives after the work is noted, never the end of the process.
"""

import atexit
import os
import signal
import sys

from .errors import Interrupted, StopSignals


def main() -> None:
    """Run the command line and exit with its code."""
    stop = StopSignals()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        from .cli import main as cli_main
    except Interrupted as exc:
        print(f"error: {exc.line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    leave(cli_main(stop=stop), stop)


def leave(code: int, stop: StopSignals) -> None:
    """End the process with ``code`` once the command is done.

    CPython's shutdown gives SIGINT and SIGTERM back their default action before it tears
    the modules down (torch's teardown takes tenths of a second), so a signal then would kill
    the process without a word after its output was complete. Instead the two signals are
    held back, the exit handlers run, a signal that came is said (exit status unchanged), and
    the process ends at once (``os._exit``), the streams flushed.
    """
    stops = {signal.SIGINT, signal.SIGTERM}
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    atexit._run_exitfuncs()
    pending = signal.sigpending() & stops if hasattr(signal, "sigpending") else set()
    if pending and stop.late is None:
        stop.late = min(pending)
    stop.say_late()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    main()

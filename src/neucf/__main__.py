"""``python -m neucf`` and the ``neucf`` script: the command line (as ``torchrun -m neucf`` runs it).

The signal handler is installed before the heavy imports (torch, pandas), so Ctrl-C or
SIGTERM during start-up also ends with one line instead of a traceback; it stays installed
until the process exits, so a signal that arrives after the work (while the interpreter
shuts down) is noted, never a traceback.
"""

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
    sys.exit(cli_main(stop=stop))


if __name__ == "__main__":
    main()

"""``python -m neucf`` and the ``neucf`` script: the command line (as ``torchrun -m neucf`` runs it).

The signal handlers are installed before the heavy imports (torch, pandas), so Ctrl-C or
SIGTERM during start-up also ends with one line instead of a traceback.
"""

import signal
import sys

from .errors import Interrupted, raise_interrupted


def main() -> None:
    """Run the command line and exit with its code."""
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        from .cli import main as cli_main
    except Interrupted as exc:
        print(f"error: {exc.line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(cli_main())


if __name__ == "__main__":
    main()

"""``python -m neucf``: the command line (as ``torchrun -m neucf`` will run it)."""

from .cli import run

if __name__ == "__main__":
    run()

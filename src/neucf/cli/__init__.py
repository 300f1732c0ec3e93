"""The ``neucf`` command line: a thin layer over the library.

One module per command group: ``data`` (describe, split), ``runs`` (train, evaluate, predict,
recommend, models), ``experiments`` (diagnose, compare, tune, report), ``serve``; ``options`` holds the
option groups they share. Results go to stdout, messages (the library's log) to stderr.
Exit codes: 0 success, 1 data error, 2 usage error, 130 interrupted; errors are one line on
stderr.

Examples:
    >>> main(["--version"])
    neucf 0.16.0
    0
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from typing import Annotated

import typer

from .. import __version__
from ..errors import Interrupted, NeucfError, StopSignals, UsageError, on_stop_signals
from . import data, experiments, runs, serve
from .launch import lost_peer_line, report_worker_error


def _version(value: bool) -> None:
    if value:
        typer.echo(f"neucf {__version__}")
        raise typer.Exit(0)


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks of up to 1 GiB for reuse; True where it took effect.

    glibc hands every freed block over its mmap threshold (at most 32 MiB by default) back
    to the kernel, so a training step whose temporaries are hundreds of MB (ML-25M's size)
    faults them all back in, page by page, on the next step; keeping them makes such a step
    much faster for a little more peak memory ("Why the defaults" in the documentation). A process-wide setting, so
    the command line makes it (every command) and the library never does; in a notebook, call
    this once, or start Python with ``MALLOC_MMAP_THRESHOLD_=1073741824``. Elsewhere than
    glibc it does nothing.

    Examples:
        >>> keep_freed_memory() in (True, False)
        True
    """
    import ctypes

    try:
        # the process's own symbols: glibc's mallopt where the C library is glibc, without
        # find_library's search of the system (3 ms on every command)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _global_options(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More messages on stderr (-vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors on stderr.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch (default: torch's choice, or OMP_NUM_THREADS).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
):  # fmt: skip
    """Neural collaborative filtering: ratings and top-N lists. Example: neucf train --dataset ml-100k --out runs/u1"""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.getLogger("neucf").setLevel(level)
    keep_freed_memory()
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def build_app() -> typer.Typer:
    """The typer application; built per call so that model flags cover every registered model."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help="Neural collaborative filtering: ratings and top-N lists. Example: neucf train --dataset ml-100k --out runs/u1",
    )
    app.callback()(_global_options)
    data.add_commands(app)
    runs.add_commands(app)
    experiments.add_commands(app)
    serve.add_commands(app)
    return app


class _Messages(logging.Formatter):
    """Info lines as they are; warnings and above prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def main(argv: list[str] | None = None, stop: StopSignals | None = None) -> int:
    """Entry point of the ``neucf`` script: runs the app and maps errors to one line + exit code.

    SIGINT and SIGTERM end a command with one line: exit 130 / 143 and "nothing was written"
    while it works (what it had half-written is removed); once its output is complete, a
    signal is noted instead, and the command ends with exit 0, saying that its output was
    written (:class:`~neucf.errors.StopSignals`). ``stop``: the handler the script installed
    before its imports, kept installed after this returns (so that a signal during the
    interpreter's exit is not a traceback either); without it, this call installs its own
    and gives the caller's handlers back after.

    Set ``NEUCF_DEBUG=1`` to see the traceback of an unexpected error.
    """
    logger = logging.getLogger("neucf")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages("%(message)s"))
    previous = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    own = stop is None
    stop = stop or StopSignals()
    try:
        with on_stop_signals(stop) if own else nullcontext():
            code = _run(argv)
            stop.done()
        stop.say_late()
        return code
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]


def _rank_prefix() -> str:
    """Under torchrun, the errors of ranks other than 0 say whose they are."""
    rank = os.environ.get("RANK", "0")
    return f"rank {rank}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 and rank != "0" else ""


def _say(line: str, code: int) -> int:
    """Print an error line (in a worker of ``train --nproc-per-node``, hand it to the launcher)."""
    if not report_worker_error(line, code):
        print(f"error: {_rank_prefix()}{line}", file=sys.stderr)
    return code


def _run(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command = typer.main.get_command(build_app())
        # the command line as given, for train --nproc-per-node to hand to its workers
        result = command.main(args=args, prog_name="neucf", standalone_mode=False, obj={"argv": args})
    except NeucfError as exc:
        return _say(str(exc), exc.exit_code)
    except Interrupted as exc:
        return _say(exc.line, exc.exit_code)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _say("interrupted; nothing was written", 130)
    except OSError as exc:
        # a file that vanished or cannot be read or written mid-way, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        return _say(f"{where}{exc.strerror or exc}", 1)
    except MemoryError:
        return _say("out of memory; use a smaller dataset, batch size or model", 1)
    except Exception as exc:
        # typer's (vendored) click raises usage errors that carry exit_code and format_message
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            if type(exc).__name__.startswith("NoArgsIsHelp"):
                print(exc.format_message())
                return 0
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return int(exc.exit_code)
        lost = lost_peer_line(exc)
        if lost is not None:
            return _say(lost, 1)
        if os.environ.get("NEUCF_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (a bug: please report it with the command; "
            "NEUCF_DEBUG=1 shows the details)",
            file=sys.stderr,
        )
        return 1
    # without standalone mode, a command's typer.Exit(code) comes back as the return value
    return result if isinstance(result, int) else 0


def run() -> None:
    """Exit with :func:`main`'s code (the ``neucf`` script is :func:`neucf.__main__.main`)."""
    sys.exit(main())

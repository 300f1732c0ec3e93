"""``neucf train --nproc-per-node N``: data-parallel training on this machine, one command.

The command starts N copies of itself through PyTorch's elastic launcher (what ``torchrun
--standalone`` runs) and reports how they ended in one line with the right exit code,
instead of each rank's line followed by torchrun's own traceback. The workers write their
error lines into a folder the launcher reads (:data:`ERRORS_ENV`); a worker that died
without one (killed) is named by its rank and signal. ``torchrun`` itself stays the way to
train on several machines.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from ..errors import Interrupted, NeucfError, UsageError

log = logging.getLogger("neucf.cli")

#: the environment variable that tells a worker where to write its error line
ERRORS_ENV = "NEUCF_WORKER_ERRORS"


def without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag`` and its value (``--flag N`` or ``--flag=N``).

    Examples:
        >>> without_flag(["train", "--nproc-per-node", "2", "--out", "r"], "--nproc-per-node")
        ['train', '--out', 'r']
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def report_worker_error(line: str, exit_code: int) -> bool:
    """In a worker this launcher started, write its error line for the launcher to report
    (True); elsewhere do nothing (False) and let the caller print it."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder:
        return False
    rank = os.environ.get("RANK", "0")
    try:
        Path(folder, f"rank-{rank}").write_text(f"{exit_code}\n{line}\n")
    except OSError:
        return False
    return True


def launch(argv: list[str], nproc: int) -> int:
    """Run ``neucf *argv`` in ``nproc`` processes on this machine (gloo on CPU, NCCL on one GPU
    each); returns the exit code and prints at most one error line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise UsageError(f"--nproc-per-node must be >= 1, got {nproc}")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
    )  # fmt: skip
    # torch's elastic agent logs its set-up at INFO, signals and every failure with a traceback
    # (each of its modules has its own logger and level)
    quiet = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher"))
    ]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="neucf-workers-") as errors:
        os.environ[ERRORS_ENV] = errors
        try:
            elastic_launch(config, sys.executable)("-m", "neucf", *argv)
            return 0
        except ChildFailedError as failed:
            line, code = _worst(failed.failures, Path(errors))
        except SignalException as exc:
            raise Interrupted(int(exc.sigval)) from None
        finally:
            os.environ.pop(ERRORS_ENV, None)
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    print(f"error: {line}", file=sys.stderr)
    return code


def _worst(failures: dict, errors: Path) -> tuple[str, int]:
    """The line and exit code that say best why the workers failed: a worker's own error
    (rank 0's first) before the peers that only lost it; a worker killed without a word is
    named by rank and signal."""
    written = {}
    for path in errors.glob("rank-*"):
        code, _, line = path.read_text().partition("\n")
        written[int(path.name[5:])] = (line.strip(), int(code))
    killed = [rank for rank, failure in sorted(failures.items()) if failure.exitcode < 0 and rank not in written]
    # a worker that the launcher stopped (SIGTERM) because a peer was killed is not the cause
    stopped = (128 + signal.SIGINT, 128 + signal.SIGTERM) if killed else ()
    causes = {rank: v for rank, v in written.items() if not v[0].startswith(LOST_PEER) and v[1] not in stopped}
    if causes:
        return causes[min(causes)]
    for rank in killed:
        name = signal.Signals(-failures[rank].exitcode).name
        return f"training process rank {rank} was killed by {name}; nothing was written", 1
    if written:
        return written[min(written)]
    rank, failure = min(failures.items())
    return f"training process rank {rank} failed (exit code {failure.exitcode}); nothing was written", 1


#: how a worker's line begins when another worker vanished under it
LOST_PEER = "lost contact with another training process"


def lost_peer_line(exc: BaseException) -> str | None:
    """The one line for a worker whose peer stopped or died mid-training (gloo or NCCL's
    connection errors), or None for any other error."""
    try:
        from torch.distributed import DistError
    except ImportError:  # pragma: no cover - torch without distributed support
        return None
    text = str(exc)
    if isinstance(exc, NeucfError) or not (
        isinstance(exc, DistError) or "Connection closed by peer" in text or "Connection reset by peer" in text
    ):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # gloo's source location, then its advice
    return f"{LOST_PEER} (it stopped or was killed: {first[:160]}); nothing was written"

"""How much memory a fit may take: every model estimates its peak from the data's size and
its own settings (:meth:`~neucf.models.Recommender.memory_needed`), and a fit whose estimate
is over half of what this machine allows is refused before any work.

What the machine allows is its physical memory, or the limit of the control group the
process runs in (a container's ``--memory``) where that is lower.

Examples:
    >>> check_memory(1, "a tiny fit", "nothing to do")
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

#: the control-group files that hold a memory limit (cgroup v2, then v1); "max" or a huge
#: number means none
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_bytes() -> int | None:
    """The memory this process may use, in bytes: the machine's physical memory, or its
    control group's limit where lower (None where the system says neither).

    Examples:
        >>> memory_bytes() is None or memory_bytes() > 0
        True
    """
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = None
    limits = [physical] if physical else []
    for path in _CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (1 << 60):
            limits.append(int(text))
    return min(limits) if limits else None


def check_memory(needed: int, what: str, advice: str) -> None:
    """Refuse (:class:`~neucf.errors.UsageError`) ``needed`` bytes when they are more than half
    of :func:`memory_bytes`; ``what`` names the work, ``advice`` says what to do instead."""
    memory = memory_bytes()
    if memory is None or needed <= memory / 2:
        return
    raise UsageError(
        f"{what} would take about {_size(needed)}, more than half of the {_size(memory)} this machine allows; {advice}"
    )


def _size(n: float) -> str:
    return f"{n / 1e9:,.0f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"

"""Files: atomic writes (a temp file in the same folder, then a rename) and data checksums.

Examples:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_write(p, "w") as f: _ = f.write("hello")
    >>> p.read_text()
    'hello'
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError, signals_held

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # elsewhere the only way to read it is to set it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", on_commit: Callable[[], None] | None = None):
    """Open a temp file beside ``path``; on success rename it over ``path``, on error delete it.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not
    the owner-only ones of a temp file; text is written as UTF-8, whatever the locale. ``on_commit`` runs right after the rename, with
    SIGINT and SIGTERM held back until it returns (:func:`~neucf.errors.signals_held`): the
    command line uses it to note that the output is complete, so that a signal arriving then
    never reports a written file as lost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        with signals_held():
            os.replace(tmp, path)
            if on_commit is not None:
                on_commit()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checksum(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (their relative names and contents, in name order).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"; _ = p.write_text("hello")
        >>> checksum(p)[:12]
        '2cf24dba5fb0'
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


#: the file that marks a folder as a complete neucf output of one kind (written last)
MARKER = ".neucf-output"


#: the files of an output folder whose SHA-256 its marker records, when the folder has them:
#: a run's ``config.json`` records its other files' (see :func:`neucf.runs.read_run_config`)
MARKED = ("config.json",)


def _marker_lines(folder: Path) -> list[str]:
    try:
        return (Path(folder) / MARKER).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def output_kind(folder: Path) -> str | None:
    """The kind of neucf output ``folder`` holds (``run``, ``split``, ...), or None."""
    lines = _marker_lines(folder)
    return (lines[0].strip() or None) if lines else None


def marked_checksums(folder: Path) -> dict[str, str]:
    """The SHA-256 of the files of :data:`MARKED` that ``folder``'s marker records (folders
    written before neucf 0.7 record none).

    Examples:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> with output_dir(out, "run") as tmp: _ = (tmp / "config.json").write_text("{}")
        >>> marked_checksums(out)["config.json"][:12]
        '44136fa355b3'
    """
    found = {}
    for line in _marker_lines(folder)[1:]:
        name, _, digest = line.strip().partition(" ")
        if name in MARKED and len(digest) == 64:
            found[name] = digest
    return found


def enclosing_output(path: str | Path) -> tuple[Path, str] | None:
    """The nearest folder above ``path`` (its own folder, or one further up, links resolved)
    that is a neucf output, with its kind; None when there is none.

    Examples:
        >>> import tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp()); mark_output(run, "run")
        >>> enclosing_output(run / "sub" / "x.csv") == (run.resolve(), "run"), enclosing_output(run)
        (True, None)
    """
    for folder in Path(path).resolve().parents:
        kind = output_kind(folder)
        if kind is not None:
            return folder, kind
    return None


def refuse_inside_output(path: str | Path, what: str) -> None:
    """Refuse (:class:`~neucf.errors.UsageError`) a new output ``path`` inside a neucf output
    folder: writing there would change that folder, and writing the folder again would
    delete it. ``what`` names the output in the message (``--out runs/u1/sub``)."""
    found = enclosing_output(path)
    if found is not None:
        folder, kind = found
        raise UsageError(
            f"{what} is inside the neucf {kind} folder {folder}: writing there would change the {kind} "
            f"(and writing the {kind} again would delete it); write it outside that folder"
        )


def check_database_url(url, what: str) -> None:
    """Refuse (:class:`~neucf.errors.UsageError`) a database ``url`` (SQLAlchemy's ``URL``) whose
    SQLite file lies inside a neucf output folder or cannot be made; ``what`` names it in the
    message (``--store 'f.db'``). Other databases, and SQLite in memory, pass."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    refuse_inside_output(url.database, what)
    folder = Path(url.database).resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: cannot create the database in {folder} (no such writable folder)")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links, hard links included); False when either is missing.

    Examples:
        >>> same_file(__file__, __file__), same_file(__file__, "no/such/file")
        (True, False)
    """
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def mark_output(folder: str | Path, kind: str) -> None:
    """Mark ``folder`` as a neucf output of ``kind``, for outputs written file by file (each
    atomically) into one folder, such as diagnostics and tuning results."""
    with atomic_write(Path(folder) / MARKER, "w") as handle:
        handle.write(kind + "\n")


def check_output_dir(out: str | Path, kind: str, inputs=(), force: bool = False) -> Path:
    """Refuse, before any work, an ``--out`` that cannot or must not be written.

    Refused always: a path that is a file, a link (the folder is replaced whole: the link
    would become a folder), one inside another neucf output folder, one that holds (or is) an
    input, one in a folder that cannot be written. Refused unless ``force``: a non-empty
    folder that is not a previous neucf output of the same ``kind``.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "train.csv").write_text("1,1,5")
        >>> check_output_dir(d, "split", inputs=[d / "train.csv"])
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: --out ... holds the input ...train.csv: writing there would destroy it; choose another folder
    """
    out = Path(out)
    if out.is_symlink():
        raise UsageError(
            f"--out {out} is a link to {os.readlink(out)}: writing would replace the link with a folder; "
            f"give the folder itself ({out.resolve()})"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose another path")
    refuse_inside_output(out, f"--out {out}")
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if source == target or target in source.parents:
            raise UsageError(
                f"--out {out} holds the input {given}: writing there would destroy it; choose another folder"
            )
    if out.is_dir() and any(out.iterdir()) and not force:
        found = output_kind(out)
        if found != kind:
            what = f"a neucf {found} folder, not a {kind} folder" if found else "not a neucf output"
            raise UsageError(
                f"--out {out} is not empty and is {what}; choose a new folder, or pass --force to replace it"
            )
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create it in {parent} (not a writable folder)")
    return out


def check_output_file(out: str | Path, inputs=()) -> Path:
    """Refuse, before any work, an output file that is a folder, is one of the inputs (the same
    file by any name: links and hard links too), lies in a neucf output folder (a run, a
    split...: writing there would change or break it), or cannot be created (its folder
    missing or not writable).

    Examples:
        >>> import tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp()); mark_output(run, "run")
        >>> check_output_file(run / "test.csv")
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: --out ...test.csv is inside the neucf run folder ...: writing there would change the run (and writing the run again would delete it); write it outside that folder
    """
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    refuse_inside_output(out, f"--out {out}")
    for given in inputs:
        if given is not None and (same_file(given, out) or Path(given).resolve() == out.resolve()):
            raise UsageError(f"--out {out} is an input ({given}): writing there would destroy it; choose another file")
    parent = out.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create it in {parent} (no such writable folder)")
    return out


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with id ``pid`` is alive.

    Examples:
        >>> process_alive(os.getpid())
        True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Clean up after earlier writes to ``out`` whose process is gone (killed with -9): their
    temporary folders are removed; a previous ``out`` they had moved aside (only where the
    system cannot exchange two folders in one step) is put back when ``out`` is missing, else
    removed."""
    for stale in sorted(out.parent.glob(f".{out.name}.*-neucf-*")):
        try:
            pid = int(stale.name.rsplit("-neucf-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not stale.is_dir() or process_alive(pid):
            continue
        previous = stale / "previous"
        if ".old-neucf-" in stale.name and previous.is_dir() and not out.exists():
            os.replace(previous, out)
            log.warning("%s: put back the previous folder, which an interrupted write had moved aside", out)
        shutil.rmtree(stale, ignore_errors=True)


def recover_output(out: str | Path) -> None:
    """What a reader of an output folder does first: clean up after an earlier write to it
    that was killed (see :func:`output_dir`), so that a folder moved aside is found again."""
    out = Path(out)
    if out.parent.is_dir():
        _remove_stale(out)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where
    the system cannot, and nothing was changed."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28
        return False
    at_cwd = -100
    done = renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0
    return done


@contextmanager
def output_dir(out: str | Path, kind: str, inputs=(), force: bool = False, on_commit: Callable[[], None] | None = None):
    """Write a whole output folder atomically: yield a temporary sibling to fill, then mark it
    complete (the marker records the SHA-256 of its :data:`MARKED` files, so that an edit to
    them is found) and put it in place of ``out`` (the old folder is kept until then). On any error
    or signal the temporary folder is removed and ``out`` is left as it was.

    Where Linux can exchange two folders in one step (``renameat2``), the new folder and the
    old one swap places at once: ``out`` is always one or the other, even under ``kill -9``.
    Elsewhere the old folder is moved aside first; if the process is killed between the two
    renames, the next write or read of ``out`` puts it back (:func:`recover_output`).
    ``on_commit`` runs right after, with SIGINT and SIGTERM held back until it returns (see
    :func:`atomic_write`).

    Examples:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> with output_dir(out, "run") as tmp: _ = (tmp / "a.txt").write_text("x")
        >>> sorted(p.name for p in out.iterdir()), output_kind(out)
        (['.neucf-output', 'a.txt'], 'run')
    """
    out = check_output_dir(out, kind, inputs, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-neucf-{os.getpid()}-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        marked = [f"{name} {checksum(tmp / name)}" for name in MARKED if (tmp / name).is_file()]
        (tmp / MARKER).write_text("\n".join([kind, *marked]) + "\n")
        with signals_held():
            if out.exists() and _exchange(tmp, out):
                pass  # tmp now holds the old folder, removed below
            elif out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-neucf-{os.getpid()}-", dir=out.parent))
                os.replace(out, old / "previous")
                os.replace(tmp, out)
                tmp = old
            else:
                os.replace(tmp, out)
            if on_commit is not None:
                on_commit()
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if tmp.exists() and tmp != out:
            shutil.rmtree(tmp, ignore_errors=True)
        raise

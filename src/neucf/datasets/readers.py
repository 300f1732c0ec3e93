"""Reading delimited ratings files: separator/header detection and line-precise errors."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import logging
import lzma
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from .ratings import Ratings, show_id

log = logging.getLogger(__name__)

ROLES = ("user", "item", "rating", "timestamp", "weight")
#: the roles of a file's columns when nothing names them, by the number of columns
POSITIONAL = {2: ("user", "item"), 3: ("user", "item", "rating"), 4: ("user", "item", "rating", "timestamp")}
_ALIASES = {
    "user": "user",
    "userid": "user",
    "user_id": "user",
    "uid": "user",
    "item": "item",
    "itemid": "item",
    "item_id": "item",
    "movieid": "item",
    "movie_id": "item",
    "iid": "item",
    "rating": "rating",
    "ratings": "rating",
    "score": "rating",
    "stars": "rating",
    "timestamp": "timestamp",
    "time": "timestamp",
    "ts": "timestamp",
    "weight": "weight",
    "count": "weight",
    "plays": "weight",
    "playcount": "weight",
    "clicks": "weight",
}
SEPARATORS = ("::", "\t", ",", " ")
DuplicatePolicy = Literal["error", "last", "mean", "sum"]


@dataclass(frozen=True)
class LoaderOptions:
    """How to read a ratings file.

    Attributes:
        sep: field separator; detected from the first line when None (``::``, tab, comma, space).
        header: whether the first line names the columns; detected when None (a header's
            rating field is not a number).
        columns: the role of each column in file order: ``user``, ``item``, ``rating``,
            ``timestamp``, ``weight`` (a count of plays or clicks, for interactions without
            ratings) or ``-`` to ignore. Default: the header's names when they are
            recognisable (userId, movieId, count, ...), else by position: ``user,item``
            (interactions), ``user,item,rating``, ``user,item,rating,timestamp``. Without a
            rating column the file holds interactions (:attr:`Ratings.implicit`).
        duplicates: what to do with a repeated (user, item) pair: ``error`` (default, names
            the first pair), ``last`` (keep the last rating in file order), ``mean``, or
            ``sum`` (interactions: their weights add up, so repeated plays become a count).
        scale: ``(min, max)`` of the rating scale; ratings outside it are an error.
            Inferred from the data when None.
        named_header: the first line must be a header naming every column by its role
            (``user``, ``item``, ``rating``, ``timestamp``, or a known alias), as the files
            neucf writes have; nothing is read by position (for split and run folders,
            whose columns a user may have edited).

    Examples:
        >>> LoaderOptions(sep=",", header=True).duplicates
        'error'
    """

    sep: str | None = None
    header: bool | None = None
    columns: tuple[str, ...] | None = None
    duplicates: DuplicatePolicy = "error"
    scale: tuple[float, float] | None = None
    named_header: bool = False

    def __post_init__(self):
        if self.duplicates not in ("error", "last", "mean", "sum"):
            raise UsageError(f"--duplicates must be error, last, mean or sum, not {self.duplicates!r}")
        if self.sep is not None and (self.sep == "" or "\n" in self.sep or "\r" in self.sep):
            raise UsageError(f"--sep {self.sep!r} must be one or more characters other than a line break")
        if self.columns is not None:
            if not any(c.strip() for c in self.columns):
                raise UsageError("--columns names nothing; give the role of each column, e.g. user,item,rating")
            named = [c for c in self.columns if c != "-"]
            twice = sorted({c for c in named if named.count(c) > 1})
            if twice:
                raise UsageError(
                    f"--columns {','.join(self.columns)!r} names {', '.join(twice)} twice; give each role once "
                    "and '-' for columns to skip, e.g. user,item,rating,-"
                )
            bad = [c for c in self.columns if c not in ROLES and c != "-"]
            if bad or not {"user", "item"} <= set(self.columns) or {"rating", "weight"} <= set(self.columns):
                raise UsageError(
                    f"--columns {','.join(self.columns)!r} must name user and item, and rating or weight or neither "
                    "(a file of interactions), optionally timestamp ('-' skips a column), e.g. "
                    "user,item,rating,timestamp or user,item,timestamp"
                )
        if self.scale is not None and not (np.isfinite(self.scale).all() and self.scale[0] < self.scale[1]):
            raise UsageError(f"rating scale {self.scale} must be (min, max) with min < max")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fields(line: str, sep: str) -> list[str]:
    line = line.rstrip("\r\n")
    return [f.strip() for f in (line.split(sep) if sep != " " else line.split())]


def separator(line: str, sep: str | None = None) -> str:
    """The field separator of ``line`` (``::``, tab, comma, space, in that order); a given one is kept.

    Examples:
        >>> separator("1::2::5")
        '::'
    """
    sep = sep or next((s for s in SEPARATORS if s in line), None)
    if sep is None:
        raise DataError(f"cannot tell the separator of {line.rstrip()[:60]!r}; pass --sep")
    return sep


def sniff(first_line: str, sep: str | None = None, next_lines=(), name: str = "data") -> tuple[str, bool]:
    """Guess (separator, has_header) from a file's first lines; a given ``sep`` is kept.

    A first line is a header only when it reads like one: a field is a known column name
    (user, item, rating, userId, movieId, ...: certain), or none of its fields is a number
    while the following lines' rating fields are (likely: a warning says which was taken and
    that ``--header/--no-header`` overrides). A first line with any number in it is data.

    Examples:
        >>> sniff("userId,movieId,rating,timestamp")
        (',', True)
        >>> sniff("196\\t242\\t3\\t881250949")
        ('\\t', False)
        >>> sniff("1\\t1\\tfive\\t0", next_lines=["2\\t2\\t4\\t0"])
        ('\\t', False)
        >>> sniff("u12,j7,3.5")
        (',', False)
    """
    line = first_line.rstrip("\r\n")
    sep = separator(line, sep)
    fields = _fields(line, sep)
    if any(_ALIASES.get(f.lower().replace(" ", "")) for f in fields):
        return sep, True
    if any(_is_number(f) for f in fields):
        return sep, False
    rating_at = 2 if len(fields) > 2 else len(fields) - 1
    following = [_fields(ln, sep) for ln in next_lines if ln.strip()][:20]
    later_numeric = bool(following) and all(len(f) > rating_at and _is_number(f[rating_at]) for f in following)
    if not following or later_numeric:
        log.warning(
            "%s: taking the first line %r as a header (none of its fields is a number); "
            "pass --no-header if it is data", name, line[:60],
        )  # fmt: skip
        return sep, True
    return sep, False


Opener = Callable[[], IO[bytes]]

_BOM = b"\xef\xbb\xbf"
_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _decompressing(opener: Opener) -> Opener:
    """``opener`` with gzip/bz2/xz content decompressed (told by its magic bytes) and a
    leading UTF-8 byte-order mark (Excel's "CSV UTF-8") skipped."""
    with opener() as probe:
        magic = probe.read(6)
    unpack = next((fn for prefix, fn in _COMPRESSED.items() if magic.startswith(prefix)), None)

    def open_plain():
        stream = unpack(opener()) if unpack else opener()
        if stream.read(3) != _BOM:
            stream.seek(0)
        return stream

    open_plain.compressed = unpack is not None
    return open_plain


def byte_source(source: str | Path | bytes | Opener, name: str | None = None) -> tuple[Opener, str]:
    """An opener of plain bytes and a name for messages, from a path (``-`` is standard
    input; pipes such as ``<(zcat f.gz)`` are read once into memory), bytes, or an opener.

    Examples:
        >>> import gzip
        >>> opener, name = byte_source(gzip.compress(bytes([0xEF, 0xBB, 0xBF]) + b"user,item,rating"))
        >>> opener().read(4), name
        (b'user', 'data')
    """
    if isinstance(source, bytes):
        data = source
        opener: Opener = lambda: io.BytesIO(data)  # noqa: E731
        return _decompressing(opener), name or "data"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if str(source) == "-":
            data = sys.stdin.buffer.read()
            return byte_source(data, name or "standard input")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
        if stat.S_ISFIFO(mode):
            with open(path, "rb") as pipe:
                return byte_source(pipe.read(), name or str(path))
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: not a regular file or a pipe (a device or folder); give a ratings file")
        if not os.access(path, os.R_OK):
            raise DataError(f"{path}: cannot read it (permission denied)")
        return _decompressing(lambda: open(path, "rb")), name or str(path)
    return _decompressing(source), name or "data"


def read_ratings_file(
    source: str | Path | bytes | Opener,
    options: LoaderOptions = LoaderOptions(),
    name: str | None = None,
    item_titles=None,
) -> Ratings:
    """Read a delimited ratings file into :class:`Ratings`.

    ``source`` is a path, the file's bytes, or a function that opens a fresh binary
    stream (used for members of a zip archive, which are read without extracting).
    Every problem is a :class:`DataError` whose message names the file and the line.

    Examples:
        >>> r = read_ratings_file(b"u,i,rating\\n1,a,4\\n2,a,3.5\\n", name="x.csv")
        >>> (len(r), r.scale)
        (2, (3.5, 4.0))
    """
    opener, name = byte_source(source, name)
    try:
        return _read(opener, name, options, item_titles)
    except (EOFError, lzma.LZMAError, zlib.error, OSError) as exc:
        if not getattr(opener, "compressed", False) or isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise DataError(f"{name}: a damaged or truncated compressed file ({exc}); get it again") from None


def _read(opener: Opener, name: str, options: LoaderOptions, item_titles) -> Ratings:
    with opener() as stream:
        head = stream.read(65536)
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{name}: a zip archive that cannot be opened (damaged or truncated); download it again")
    nul = head.find(b"\0")
    if nul >= 0:
        raise DataError(f"{name}: a binary file (NUL byte at byte {nul}); expected text with one rating per line")
    encoding = "utf-8" if _is_utf8(head, whole=len(head) < 65536) else "latin-1"
    if encoding == "latin-1":
        _latin1_fallback(name, "in its first 64 KB")
    text_head = head.decode(encoding, errors="ignore" if encoding == "utf-8" else "strict")
    lines = text_head.splitlines()
    if len(head) == 65536 and len(lines) > 1:
        lines = lines[:-1]  # the head may end mid-line
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DataError(f"{name}: the file is empty; it must hold one rating per line")
    if options.header is None and not options.named_header:
        sep, header = sniff(lines[0], options.sep, lines[1:], name)
    else:
        sep, header = separator(lines[0], options.sep), options.header is not False

    frame, encoding = _parse(opener, sep, header, name, encoding)
    if options.named_header:  # from the line itself: pandas renames a repeated column (rating.1)
        roles = _named_roles(_fields(lines[0], sep), name)
        if len(roles) != frame.shape[1]:
            raise DataError(f"{name}: malformed header line; every line needs the same fields")
    else:
        roles = _roles(frame, options.columns, header, name)
    first_line_no = 2 if header else 1
    if frame.empty:
        raise DataError(f"{name}: the file holds no ratings")
    id_kinds = [frame.iloc[:, roles.index(role)].dtype.kind for role in ("user", "item")]
    if "f" in id_kinds or (set(id_kinds) & set("iu") and _has_padded_number(opener, sep, encoding)):
        # an id column parsed as numbers lost how it was written ("0042", "+7", "1.5" next
        # to "196"): read the file again as text, and type each id column on its own
        frame, _ = _parse(opener, sep, header, name, encoding, as_text=True)

    def line_of(row: int) -> int:
        return first_line_no + int(row)

    cols = {role: frame.iloc[:, pos] for pos, role in enumerate(roles) if role != "-"}
    implicit = "rating" not in cols
    if implicit and options.scale is not None:
        raise UsageError(f"--rating-scale is for rated data: {name} holds interactions without ratings; leave it out")
    value_role = "weight" if implicit else "rating"
    blank = cols["user"].isna() | cols["item"].isna()
    if value_role in cols:
        blank |= cols[value_role].isna()
        as_float = pd.to_numeric(cols[value_role], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        as_float = np.ones(len(frame))
    # ratings are kept as 32-bit floats: a larger finite number would become inf there
    bad = blank.to_numpy() | ~(np.abs(as_float) <= np.finfo(np.float32).max) | (implicit & ~(as_float > 0))
    if bad.any():
        row = int(np.argmax(bad))
        if blank.iloc[row]:
            raise DataError(
                f"{name} line {line_of(row)}: expected {len(roles)} fields separated by {sep!r}, "
                "found fewer (or an empty field)"
            )
        shown = _show(cols[value_role].iloc[row])
        if implicit and np.isfinite(as_float[row]) and as_float[row] <= 0:
            raise DataError(f"{name} line {line_of(row)}: weight {shown} is not a positive count")
        if np.isfinite(as_float[row]):
            raise DataError(
                f"{name} line {line_of(row)}: {value_role} {shown} is too large ({value_role}s are 32-bit: |r| <= 3.4e38)"
            )
        raise DataError(f"{name} line {line_of(row)}: {value_role} {shown} is not a finite number")
    values = as_float.astype(np.float32)
    if options.scale is not None and not implicit:
        lo, hi = options.scale
        outside = (values < lo) | (values > hi)
        if outside.any():
            row = int(np.argmax(outside))
            raise DataError(f"{name} line {line_of(row)}: rating {values[row]:g} is outside the scale {lo:g}..{hi:g}")
    timestamps = None
    if "timestamp" in cols:
        ts = pd.to_numeric(cols["timestamp"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        # a timestamp must be a whole number that int64 holds (float64 is exact to 2**53)
        bad_ts = ~np.isfinite(ts) | (np.abs(ts) >= 2.0**62) | (ts != np.round(ts))
        if bad_ts.any():
            row = int(np.argmax(bad_ts))
            raise DataError(
                f"{name} line {line_of(row)}: timestamp {_show(cols['timestamp'].iloc[row])} is not a whole number "
                "of seconds (finite, below 2**62)"
            )
        timestamps = ts.astype(np.int64)

    users, items = _ids(cols["user"]), _ids(cols["item"])
    del frame, cols  # the parsed table is the largest object: free it before indexing
    scale = None if implicit else options.scale
    ratings = Ratings.from_arrays(users, items, values, timestamps, scale, item_titles, implicit=implicit)
    del users, items
    return resolve_duplicates(ratings, options.duplicates, name, first_line_no)


def _is_utf8(data: bytes, whole: bool = True) -> bool:
    """Whether ``data`` is UTF-8 text (``whole``: all of a file; else its head, which may end
    inside a character)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return not whole and exc.reason == "unexpected end of data"
    return True


def _latin1_fallback(name: str, where: str) -> None:
    log.info("%s: not UTF-8 text (%s); read as Latin-1 (ISO-8859-1)", name, where)


def decode_text(data: bytes, name: str) -> str:
    """A text file's bytes as text: UTF-8 (the byte-order mark already dropped), or Latin-1
    (ISO-8859-1) when they are not valid UTF-8, which the log says.

    Examples:
        >>> decode_text("café".encode(), "x.csv"), decode_text("café".encode("latin-1"), "x.csv")
        ('café', 'café')
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _latin1_fallback(name, f"byte {exc.start:,}")
        return data.decode("latin-1")


def _parse(
    opener: Opener, sep: str, header: bool, name: str, encoding: str = "utf-8", as_text: bool = False
) -> tuple[pd.DataFrame, str]:
    """The file as a table, and the encoding it was read in: ``encoding``, or Latin-1 when the
    file proves not to be UTF-8 past its head (said in the log)."""
    try:
        return _parse_as(opener, sep, header, name, encoding, as_text), encoding
    except UnicodeDecodeError as exc:
        if encoding == "latin-1":
            raise DataError(f"{name}: not a text file ({exc.reason})") from None
        _latin1_fallback(name, "past its first 64 KB")
        return _parse_as(opener, sep, header, name, "latin-1", as_text), "latin-1"


def _parse_as(opener: Opener, sep: str, header: bool, name: str, encoding: str, as_text: bool) -> pd.DataFrame:
    # Blank lines are kept (as empty rows) so that row k is line k+1: error messages
    # then name the right line. Trailing blank lines are dropped below.
    kwargs = dict(
        header=0 if header else None, skip_blank_lines=False, encoding=encoding, keep_default_na=False, na_values=[""]
    )
    if as_text:
        kwargs["dtype"] = str
    try:
        if sep == "::":
            # pandas' C parser takes one-character separators only: split on ':' and keep
            # every other field, which is fast on ML-1M/10M and exact when ids have no ':'.
            with opener() as stream:
                frame = pd.read_csv(stream, sep=":", engine="c", **kwargs)
            if frame.shape[1] % 2 == 0 or frame.iloc[:, 1::2].notna().any().any():
                with opener() as stream:
                    frame = pd.read_csv(stream, sep="::", engine="python", **kwargs)
            else:
                frame = frame.iloc[:, 0::2]
        elif len(sep) > 1:
            with opener() as stream:
                frame = pd.read_csv(stream, sep=re.escape(sep), engine="python", **kwargs)
        else:
            with opener() as stream:
                frame = pd.read_csv(stream, sep=r"\s+" if sep == " " else sep, engine="c", **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the file holds no ratings") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{name}: malformed line ({_short(exc)}); every line needs the same fields") from None
    filled = frame.notna().any(axis=1).to_numpy()
    if filled.any() and not filled[-1]:
        frame = frame.iloc[: len(filled) - int(np.argmax(filled[::-1]))]
    return frame


def _show(value) -> str:
    """A field as the user wrote it: text quoted, numbers plain (no ``np.float64(...)``)."""
    return repr(value) if isinstance(value, str) else str(getattr(value, "item", lambda: value)())


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    return text.replace("Error tokenizing data. C error: ", "")


def _one_line(name) -> str:
    """A header field as it can be shown in a one-line message (a quoted field may hold line
    breaks or control characters: those are escaped)."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def _roles(frame: pd.DataFrame, columns, header: bool, name: str) -> tuple[str, ...]:
    n = frame.shape[1]
    if columns is not None:
        if len(columns) != n:
            raise DataError(f"{name}: --columns names {len(columns)} columns but the file has {n}")
        return tuple(columns)
    if header:
        roles = tuple(_ALIASES.get(str(c).strip().lower().replace(" ", ""), "-") for c in frame.columns)
        named = [r for r in roles if r != "-"]
        if {"user", "item"} <= set(named) and len(named) == len(set(named)) and not {"rating", "weight"} <= set(named):
            return roles
        if n in POSITIONAL:
            return POSITIONAL[n]
        raise DataError(
            f"{name}: cannot tell which header columns are user, item and rating "
            f"({', '.join(_one_line(c) for c in frame.columns)}); pass --columns, e.g. user,item,rating,-"
        )
    if n in POSITIONAL:
        return POSITIONAL[n]
    raise DataError(
        f"{name}: {n} columns per line; pass --columns to say which are user, item, rating (or none: interactions)"
    )


def _named_roles(header: list[str], name: str) -> tuple[str, ...]:
    """The roles of a header that must name every column (``LoaderOptions.named_header``)."""
    roles = tuple(_ALIASES.get(str(c).strip().lower().replace(" ", "")) for c in header)
    shown = ",".join(_one_line(c) for c in header)
    unknown = [str(c) for c, role in zip(header, roles) if role is None]
    twice = sorted({r for r in roles if r is not None and roles.count(r) > 1})
    if unknown or twice or not {"user", "item"} <= set(roles) or {"rating", "weight"} <= set(roles):
        what = (
            f"{unknown[0]!r} is not a column neucf knows" if unknown
            else f"it names {twice[0]} twice" if twice
            else "it names both rating and weight" if {"rating", "weight"} <= set(roles)
            else "it lacks " + ", ".join(r for r in ("user", "item") if r not in roles)
        )  # fmt: skip
        raise DataError(
            f"{name} line 1: expected the header user,item,rating[,timestamp] (interactions: "
            f"user,item[,weight][,timestamp]), found {shown!r} ({what}); write the file again with that header"
        )
    return roles


def _has_padded_number(opener: Opener, sep: str, encoding: str = "utf-8", block: int = 1 << 24) -> bool:
    """Whether any field starts with a zero followed by a digit, or with '+' (ids such as
    ``0042`` that reading as integers would change). Scans the raw bytes in blocks."""
    boundary = rb"\s" if sep == " " else re.escape(sep.encode(encoding))
    pattern = re.compile(rb"(?:^|" + boundary + rb")[ \t]*(?:0[0-9]|\+)", re.MULTILINE)
    tail = b""
    with opener() as stream:
        while chunk := stream.read(block):
            if pattern.search(tail + chunk):
                return True
            tail = chunk[-16:]
    return False


_CANONICAL_INTEGER = r"-?(?:0|[1-9][0-9]*)"


def _ids(column: pd.Series) -> np.ndarray:
    """Ids as written: integers (int64, or uint64 for ids >= 2**63) when every id of the column
    is a plain integer, else text. Each column is typed on its own.

    Examples:
        >>> _ids(pd.Series(["0042", "7"])).tolist(), _ids(pd.Series(["42", "7"])).tolist()
        (['0042', '7'], [42, 7])
        >>> _ids(pd.Series(["18446744073709551615"])).dtype
        dtype('uint64')
    """
    if column.dtype.kind in "iu":
        return column.to_numpy()
    text = column.astype(str).str.strip()
    if text.str.fullmatch(_CANONICAL_INTEGER).all():
        try:
            numbers = pd.to_numeric(text)
        except (ValueError, OverflowError):
            numbers = None
        if numbers is not None and numbers.dtype.kind in "iu":
            return numbers.to_numpy()
    return text.to_numpy(dtype=object)


def read_table(
    source: str | Path | bytes, required: tuple[str, ...], optional: tuple[str, ...] = (), name: str | None = None
) -> pd.DataFrame:
    """A comma-separated table with a header (pairs to predict, a history to fold in): every
    field as text, exactly as written, with the columns ``required`` (and ``optional`` ones
    when present; others are ignored).

    Read with the checks of any input file (byte-order mark, compression, binary content):
    a line with more or fewer fields than the header, a header naming a column twice, or a
    missing column is a :class:`DataError` naming the line.

    Examples:
        >>> read_table(b"user,item\\n196,242\\n", ("user", "item")).values.tolist()
        [['196', '242']]
        >>> read_table(b"user,item\\n196,242,5\\n", ("user", "item"), name="pairs.csv")
        Traceback (most recent call last):
        ...
        neucf.errors.DataError: pairs.csv line 2: 3 fields, but the header names 2 (user,item); every line needs one field per column
    """
    import csv

    opener, name = byte_source(source, name)
    try:
        with opener() as stream:
            data = stream.read()
    except (EOFError, lzma.LZMAError, zlib.error, OSError) as exc:
        if not getattr(opener, "compressed", False) or isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise DataError(f"{name}: a damaged or truncated compressed file ({exc}); get it again") from None
    if b"\0" in data:
        raise DataError(f"{name}: a binary file (NUL byte); expected a CSV with the header {','.join(required)}")
    rows = csv.reader(io.StringIO(decode_text(data, name), newline=""))
    header = next(rows, None)
    if header is None:
        raise DataError(f"{name}: the file is empty; it needs the header {','.join(required)} and rows")
    header = [h.strip() for h in header]
    shown = ",".join(_one_line(h) for h in header)
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise DataError(f"{name} line 1: the header names {twice[0]} twice ({shown}); name each column once")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{name} line 1: needs the header {','.join(required)} (missing {', '.join(missing)}; found {shown})"
        )
    wanted = [c for c in (*required, *optional) if c in header]
    at = [header.index(c) for c in wanted]
    columns: list[list[str]] = [[] for _ in wanted]
    lines = []
    try:
        for row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != len(header):
                raise DataError(
                    f"{name} line {rows.line_num}: {len(row)} field{'s' * (len(row) != 1)}, but the header names "
                    f"{len(header)} ({shown}); every line needs one field per column"
                )
            for values, k in zip(columns, at):
                values.append(row[k].strip())
            lines.append(rows.line_num)
    except csv.Error as exc:
        raise DataError(f"{name} line {rows.line_num}: malformed CSV ({exc})") from None
    if not lines:
        raise DataError(f"{name}: holds a header but no rows")
    return pd.DataFrame(dict(zip(wanted, columns)), index=pd.Index(lines, name="line"))


def resolve_duplicates(
    ratings: Ratings, policy: DuplicatePolicy, name: str = "data", first_line_no: int = 1
) -> Ratings:
    """Apply the duplicate (user, item) policy; ``error`` names the first repeated pair.

    Examples:
        >>> r = Ratings.from_arrays([1, 1], [2, 2], [3.0, 5.0])
        >>> resolve_duplicates(r, "mean").ratings.tolist()
        [4.0]
    """
    key = ratings.users.astype(np.int64) * ratings.n_items + ratings.items
    # cheap test first (one sorted copy): the full bookkeeping below is only paid when needed
    sorted_key = np.sort(key)
    if not (sorted_key[1:] == sorted_key[:-1]).any():
        return ratings
    del sorted_key
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    if policy == "error":
        repeated = np.flatnonzero(counts[inverse] > 1)
        row = repeated[0]
        later = repeated[inverse[repeated] == inverse[row]][1]
        user, item = ratings.user_ids[ratings.users[row]], ratings.item_ids[ratings.items[row]]
        what, advice = (
            ("interaction with", "sum (count them), last") if ratings.implicit else ("rating of", "last or mean")
        )
        raise DataError(
            f"{name} lines {first_line_no + row} and {first_line_no + later}: duplicate {what} item "
            f"{show_id(item)} by user {show_id(user)}; pass --duplicates {advice.replace(', ', ' or --duplicates ')}"
        )
    # keep each pair at the position of its last occurrence so that file order survives
    last = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]
    keep = np.sort(last)
    out = ratings.subset(keep)
    if policy in ("mean", "sum"):
        if policy == "sum" and not ratings.implicit:
            raise DataError(f"{name}: --duplicates sum adds up the weights of interactions; ratings take last or mean")
        sums = np.bincount(inverse, weights=ratings.ratings.astype(np.float64))
        values = (sums / counts if policy == "mean" else sums).astype(np.float32)
        pair_of_keep = np.searchsorted(uniq, key[keep])
        out = dataclasses.replace(out, ratings=values[pair_of_keep])
    return out

"""Reading delimited ratings files: separator/header detection and line-precise errors."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from .ratings import Ratings, show_id

log = logging.getLogger(__name__)

ROLES = ("user", "item", "rating", "timestamp")
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
}
SEPARATORS = ("::", "\t", ",", " ")
DuplicatePolicy = Literal["error", "last", "mean"]


@dataclass(frozen=True)
class LoaderOptions:
    """How to read a ratings file.

    Attributes:
        sep: field separator; detected from the first line when None (``::``, tab, comma, space).
        header: whether the first line names the columns; detected when None (a header's
            rating field is not a number).
        columns: the role of each column in file order: ``user``, ``item``, ``rating``,
            ``timestamp`` or ``-`` to ignore. Default: the header's names when they are
            recognisable (userId, movieId, ...), else ``user,item,rating[,timestamp]``.
        duplicates: what to do with a repeated (user, item) pair: ``error`` (default, names
            the first pair), ``last`` (keep the last rating in file order) or ``mean``.
        scale: ``(min, max)`` of the rating scale; ratings outside it are an error.
            Inferred from the data when None.

    Example:
        >>> LoaderOptions(sep=",", header=True).duplicates
        'error'
    """

    sep: str | None = None
    header: bool | None = None
    columns: tuple[str, ...] | None = None
    duplicates: DuplicatePolicy = "error"
    scale: tuple[float, float] | None = None

    def __post_init__(self):
        if self.duplicates not in ("error", "last", "mean"):
            raise UsageError(f"--duplicates must be error, last or mean, not {self.duplicates!r}")
        if self.columns is not None:
            bad = [c for c in self.columns if c not in ROLES and c != "-"]
            if bad or not {"user", "item", "rating"} <= set(self.columns):
                raise UsageError(
                    f"--columns {','.join(self.columns)!r} must name user, item and rating "
                    "(and optionally timestamp; '-' skips a column), e.g. user,item,rating,timestamp"
                )
        if self.scale is not None and not self.scale[0] < self.scale[1]:
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

    Example:
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

    Example:
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

    Example:
        >>> r = read_ratings_file(b"u,i,rating\\n1,a,4\\n2,a,3.5\\n", name="x.csv")
        >>> (len(r), r.scale)
        (2, (3.5, 4.0))
    """
    if isinstance(source, bytes):
        data = source
        opener: Opener = lambda: io.BytesIO(data)  # noqa: E731
        name = name or "data"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        opener = lambda: open(path, "rb")  # noqa: E731
        name = name or str(path)
    else:
        opener = source
        name = name or "data"
    with opener() as stream:
        text_head = stream.read(65536).decode("latin-1")
    lines = text_head.splitlines()
    if len(text_head) == 65536 and len(lines) > 1:
        lines = lines[:-1]  # the head may end mid-line
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DataError(f"{name}: the file is empty; it must hold one rating per line")
    if options.header is None:
        sep, header = sniff(lines[0], options.sep, lines[1:], name)
    else:
        sep, header = separator(lines[0], options.sep), options.header

    frame = _parse(opener, sep, header, name)
    roles = _roles(frame, options.columns, header, name)
    first_line_no = 2 if header else 1
    if frame.empty:
        raise DataError(f"{name}: the file holds no ratings")

    def line_of(row: int) -> int:
        return first_line_no + int(row)

    cols = {role: frame.iloc[:, pos] for pos, role in enumerate(roles) if role != "-"}
    blank = cols["user"].isna() | cols["item"].isna() | cols["rating"].isna()
    rating = pd.to_numeric(cols["rating"], errors="coerce")
    bad = blank.to_numpy() | ~np.isfinite(rating.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.argmax(bad))
        if blank.iloc[row]:
            raise DataError(
                f"{name} line {line_of(row)}: expected {len(roles)} fields separated by {sep!r}, "
                "found fewer (or an empty field)"
            )
        raise DataError(f"{name} line {line_of(row)}: rating {cols['rating'].iloc[row]!r} is not a finite number")
    values = rating.to_numpy(dtype=np.float32)
    if options.scale is not None:
        lo, hi = options.scale
        outside = (values < lo) | (values > hi)
        if outside.any():
            row = int(np.argmax(outside))
            raise DataError(f"{name} line {line_of(row)}: rating {values[row]:g} is outside the scale {lo:g}..{hi:g}")
    timestamps = None
    if "timestamp" in cols:
        ts = pd.to_numeric(cols["timestamp"], errors="coerce")
        if ts.isna().any():
            row = int(np.argmax(ts.isna().to_numpy()))
            raise DataError(f"{name} line {line_of(row)}: timestamp {cols['timestamp'].iloc[row]!r} is not a number")
        timestamps = ts.to_numpy(dtype=np.int64)

    users, items = _ids(cols["user"]), _ids(cols["item"])
    del frame, cols, rating  # the parsed table is the largest object: free it before indexing
    ratings = Ratings.from_arrays(users, items, values, timestamps, options.scale, item_titles)
    del users, items
    return resolve_duplicates(ratings, options.duplicates, name, first_line_no)


def _parse(opener: Opener, sep: str, header: bool, name: str) -> pd.DataFrame:
    # Blank lines are kept (as empty rows) so that row k is line k+1: error messages
    # then name the right line. Trailing blank lines are dropped below.
    kwargs = dict(
        header=0 if header else None, skip_blank_lines=False, encoding="latin-1", keep_default_na=False, na_values=[""]
    )
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
        else:
            with opener() as stream:
                frame = pd.read_csv(stream, sep=r"\s+" if sep == " " else sep, engine="c", **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the file holds no ratings") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{name}: malformed line ({_short(exc)}); every line needs the same fields") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not a text file ({exc.reason})") from None
    filled = frame.notna().any(axis=1).to_numpy()
    if filled.any() and not filled[-1]:
        frame = frame.iloc[: len(filled) - int(np.argmax(filled[::-1]))]
    return frame


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    return text.replace("Error tokenizing data. C error: ", "")


def _roles(frame: pd.DataFrame, columns, header: bool, name: str) -> tuple[str, ...]:
    n = frame.shape[1]
    if columns is not None:
        if len(columns) != n:
            raise DataError(f"{name}: --columns names {len(columns)} columns but the file has {n}")
        return tuple(columns)
    if header:
        roles = tuple(_ALIASES.get(str(c).strip().lower().replace(" ", ""), "-") for c in frame.columns)
        if {"user", "item", "rating"} <= set(roles):
            return roles
        if n in (3, 4):
            return ROLES[:n]
        raise DataError(
            f"{name}: cannot tell which header columns are user, item and rating "
            f"({', '.join(map(str, frame.columns))}); pass --columns, e.g. user,item,rating,-"
        )
    if n in (3, 4):
        return ROLES[:n]
    raise DataError(f"{name}: {n} columns per line; pass --columns to say which are user, item, rating")


def _ids(column: pd.Series) -> np.ndarray:
    if column.dtype.kind == "f":
        as_int = column.astype(np.int64)
        if (as_int == column).all():
            return as_int.to_numpy()
    if column.dtype.kind == "O":
        return column.astype(str).str.strip().to_numpy()
    return column.to_numpy()


def resolve_duplicates(
    ratings: Ratings, policy: DuplicatePolicy, name: str = "data", first_line_no: int = 1
) -> Ratings:
    """Apply the duplicate (user, item) policy; ``error`` names the first repeated pair.

    Example:
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
        raise DataError(
            f"{name} lines {first_line_no + row} and {first_line_no + later}: duplicate rating of item "
            f"{show_id(item)} by user {show_id(user)}; pass --duplicates last or --duplicates mean"
        )
    # keep each pair at the position of its last occurrence so that file order survives
    last = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]
    keep = np.sort(last)
    out = ratings.subset(keep)
    if policy == "mean":
        sums = np.bincount(inverse, weights=ratings.ratings.astype(np.float64))
        means = (sums / counts).astype(np.float32)
        pair_of_keep = np.searchsorted(uniq, key[keep])
        out = dataclasses.replace(out, ratings=means[pair_of_keep])
    return out

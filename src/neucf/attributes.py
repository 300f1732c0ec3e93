"""What items and users are, beside what they rated: attribute tables (genres, release year,
age, occupation...) read from delimited files or from the MovieLens releases, each column
typed as a whole, and turned into feature matrices a model can read.

An attribute file is delimited text with a header (comma, tab or ``::`` separated); its first column is the id (matched as the
ratings file's ids are), every other column one attribute, typed as a whole: ``numeric`` when
every non-empty value is a number, ``labels`` (a set, such as genres) when any value holds
``|``, else ``category``; ``types`` overrides (ML-1M's age and occupation are codes, zip codes
have leading zeros). A column named ``title`` is the item's title, not an attribute. An empty
field is missing.

Examples:
    >>> items = read_attributes(b"item,genres,year\\n1,Comedy|Drama,1995\\n2,Drama,\\n")
    >>> items.kinds, items.features([1, 2, 3]).toarray().round(2).tolist()
    ({'genres': 'labels', 'year': 'numeric'}, [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets.ratings import id_text, show_id
from .datasets.readers import _ids, byte_source, decode_text
from .errors import DataError, UsageError

log = logging.getLogger(__name__)

#: how an attribute column is read
KINDS = ("numeric", "category", "labels")


@dataclass(frozen=True)
class Attributes:
    """An attribute table: ``ids`` (raw, typed as ratings ids are), ``table`` (one text column
    per attribute, ``""`` where missing), each column's kind, and the titles when a ``title``
    column gave them."""

    ids: np.ndarray
    table: pd.DataFrame
    kinds: dict[str, str]
    titles: pd.Series | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def rows_for(self, ids) -> np.ndarray:
        """The table's row of each of ``ids`` (raw), -1 where it has none."""
        index = pd.Index([id_text(x) for x in self.ids])
        return index.get_indexer([id_text(x) for x in np.asarray(ids, dtype=object)])

    def features(self, ids) -> sp.csr_matrix:
        """Rows of features for ``ids`` (raw; an id without a row: all zero): one column per
        category value and per label, and per numeric attribute its standardised value with
        a column that marks it missing (the value is then 0).

        Examples:
            >>> users = read_attributes(b"user,age,gender\\n1,20,F\\n2,40,M\\n")
            >>> users.features([2]).toarray().tolist()
            [[1.0, 0.0, 0.0, 1.0]]
        """
        rows = self.rows_for(ids)
        found = rows >= 0
        blocks = []
        for name, kind in self.kinds.items():
            column = self.table[name].to_numpy(dtype=object)
            if kind == "numeric":
                values = pd.to_numeric(pd.Series(column).replace("", np.nan)).to_numpy(np.float64)
                known = ~np.isnan(values)
                mean = values[known].mean() if known.any() else 0.0
                std = values[known].std() if known.sum() > 1 else 0.0
                scaled = np.where(known, (values - mean) / (std or 1.0), 0.0)
                block = np.zeros((len(rows), 2))
                block[found, 0] = scaled[rows[found]]
                block[found, 1] = ~known[rows[found]]
                blocks.append(sp.csr_matrix(block))
                continue
            split = [v.split("|") if kind == "labels" else [v] for v in column]
            vocabulary = sorted({label.strip() for labels in split for label in labels if label.strip()})
            position = {label: k for k, label in enumerate(vocabulary)}
            out_rows, out_cols = [], []
            for out_row, row in enumerate(rows):
                if row >= 0:
                    for label in split[row]:
                        if label.strip():
                            out_rows.append(out_row)
                            out_cols.append(position[label.strip()])
            data = np.ones(len(out_rows))
            blocks.append(sp.csr_matrix((data, (out_rows, out_cols)), shape=(len(rows), len(vocabulary))))
        if not blocks:
            return sp.csr_matrix((len(rows), 0))
        return sp.hstack(blocks, format="csr")

    def write_csv(self, path, kind: str = "item") -> None:
        """Write the table (the id column named ``kind``, labels joined by ``|``, the title
        when there is one) as UTF-8 CSV, atomically."""
        from .files import atomic_write

        frame = self.table.copy()
        if self.titles is not None:
            frame.insert(0, "title", [self.titles.get(i, "") for i in self.ids])
        frame.insert(0, kind, self.ids)
        with atomic_write(path, "w") as handle:
            frame.to_csv(handle, index=False)


def read_attributes(source, types: dict[str, str] | None = None, name: str | None = None) -> Attributes:
    """An attribute file (see the module docstring): a path, its bytes, or an opener;
    ``types`` names a column's kind (``numeric``, ``category`` or ``labels``) over the one
    its values suggest. Every problem is a :class:`DataError` naming the file and line.

    Examples:
        >>> read_attributes(b"user,zip\\n1,02138\\n", {"zip": "category"}).table["zip"].tolist()
        ['02138']
    """
    opener, name = byte_source(source, name)
    with opener() as stream:
        data = stream.read()
    if b"\0" in data:
        raise DataError(f"{name}: a binary file (NUL byte); expected a delimited file of attributes with a header")
    text = decode_text(data, name)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{name}: the file is empty; it needs a header (the id column first) and rows")
    sep = "::" if "::" in lines[0] else "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep)) if len(sep) == 1 else [
        line.split(sep) for line in lines
    ]  # fmt: skip
    header = [h.strip() for h in rows[0]]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice or not header[0]:
        raise DataError(
            f"{name} line 1: the header names {twice[0] if twice else 'no id column'}; name each column once"
        )
    body = [(k + 2, row) for k, row in enumerate(rows[1:]) if any(field.strip() for field in row)]
    for line, row in body:
        if len(row) != len(header):
            raise DataError(
                f"{name} line {line}: {len(row)} fields, but the header names {len(header)}; every line needs one "
                "field per column"
            )
    if not body:
        raise DataError(f"{name}: holds a header but no rows")
    table = pd.DataFrame([[field.strip() for field in row] for _, row in body], columns=header, dtype=object)
    ids = _ids(table.iloc[:, 0])
    repeated = pd.Index([id_text(x) for x in ids]).duplicated()
    if repeated.any():
        first = int(np.argmax(repeated))
        raise DataError(
            f"{name} line {body[first][0]}: id {show_id(ids[first])} has a row already; give each id one row"
        )
    titles = None
    attributes = table.iloc[:, 1:]
    if "title" in attributes:
        titles = pd.Series(attributes.pop("title").to_numpy(), index=ids)
    types = dict(types or {})
    unknown = sorted(set(types) - set(attributes))
    if unknown:
        raise UsageError(f"types name {unknown[0]!r}, which {name} has no column of")
    bad = sorted(k for k in types.values() if k not in KINDS)
    if bad:
        raise UsageError(f"types: {bad[0]!r} is not a kind; choose {', '.join(KINDS)}")
    kinds = {column: types.get(column) or _kind(attributes[column]) for column in attributes}
    for column, kind in kinds.items():
        if kind == "numeric":
            values = attributes[column].replace("", np.nan)
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
            wrong = values.notna().to_numpy() & ~np.isfinite(numbers)
            if wrong.any():
                row = int(np.argmax(wrong))
                raise DataError(
                    f"{name} line {body[row][0]}: {column} {attributes[column].iloc[row]!r} is not a finite number; "
                    f"type it as a category if it is a code ({column}=category)"
                )
    return Attributes(ids, attributes.reset_index(drop=True), kinds, titles)


def _kind(values: pd.Series) -> str:
    filled = values[values != ""]
    if filled.str.contains("|", regex=False).any():
        return "labels"
    if len(filled) and pd.to_numeric(filled, errors="coerce").notna().all():
        return "numeric"
    return "category"


def parse_types(text: str | None) -> dict[str, str]:
    """Column types written ``age=category,zip=category``, as a dict (for :func:`read_attributes`).

    Examples:
        >>> parse_types("age=category, zip=category")
        {'age': 'category', 'zip': 'category'}
    """
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        column, sep, kind = part.partition("=")
        if not sep or not column.strip():
            raise UsageError(f"attribute types {text!r}: write column=kind pairs, e.g. age=category,zip=category")
        out[column.strip()] = kind.strip()
    return out


# ---- the MovieLens releases ------------------------------------------------------------------------
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _year_of_title(title: str) -> str:
    found = _YEAR.search(title or "")
    return found.group(1) if found else ""


def movielens_attributes(path) -> tuple[Attributes | None, Attributes | None]:
    """The item and user attributes a MovieLens release ships, from its folder or zip, or from
    the folder of one of its ratings files: ml-100k (``u.item`` genres and release year,
    ``u.user`` age, gender, occupation and the zip code's first digit), ML-1M (``movies.dat``
    genres and the year in the title, ``users.dat`` likewise with its age and occupation
    codes), ml-latest and ML-20M/25M/32M (``movies.csv`` genres and year; no user
    attributes). ``(None, None)`` where there are none.

    Examples:
        >>> movielens_attributes("no/such/folder")
        (None, None)
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = {Path(n).name: n for n in archive.namelist()}
        read = lambda base: archive.read(members[base]) if base in members else None  # noqa: E731
    elif folder.is_dir():
        files = {p.name: p for p in [*folder.glob("*"), *folder.glob("*/*")] if p.is_file()}
        read = lambda base: files[base].read_bytes() if base in files else None  # noqa: E731
    else:
        return None, None
    if (raw := read("u.item")) is not None:
        genres = (read("u.genre") or b"").decode("latin-1").splitlines()
        names = [g.split("|")[0] for g in genres if "|" in g] or [f"genre{k}" for k in range(19)]
        lines = []
        for row in csv.reader(io.StringIO(raw.decode("latin-1")), delimiter="|"):
            if len(row) >= 5:
                flags = [names[k] for k, f in enumerate(row[5:]) if f == "1" and k < len(names)]
                lines.append([row[0], row[1], "|".join(flags), row[2][-4:] if row[2] else ""])
        items = _table(["item", "title", "genres", "year"], lines, {"genres": "labels", "year": "numeric"})
        users = None
        if (raw := read("u.user")) is not None:
            rows = [r.split("|") for r in raw.decode("latin-1").splitlines() if r.strip()]
            users = _table(["user", "age", "gender", "occupation", "zip1"],
                           [[r[0], r[1], r[2], r[3], r[4][:1]] for r in rows],
                           {"age": "numeric", "gender": "category", "occupation": "category", "zip1": "category"})  # fmt: skip
        return items, users
    if (raw := read("movies.dat")) is not None:
        rows = [r.split("::") for r in raw.decode("latin-1").splitlines() if r.strip()]
        items = _table(["item", "title", "genres", "year"], [[r[0], r[1], r[2], _year_of_title(r[1])] for r in rows],
                       {"genres": "labels", "year": "numeric"})  # fmt: skip
        users = None
        if (raw := read("users.dat")) is not None:
            rows = [r.split("::") for r in raw.decode("latin-1").splitlines() if r.strip()]
            users = _table(["user", "gender", "age", "occupation", "zip1"],
                           [[r[0], r[1], r[2], r[3], r[4][:1]] for r in rows],
                           dict.fromkeys(("gender", "age", "occupation", "zip1"), "category"))  # fmt: skip
        return items, users
    if (raw := read("movies.csv")) is not None:
        rows = list(csv.reader(io.StringIO(decode_text(raw, "movies.csv"))))[1:]
        lines = [[r[0], r[1], "" if r[2] == "(no genres listed)" else r[2], _year_of_title(r[1])] for r in rows]
        return _table(["item", "title", "genres", "year"], lines, {"genres": "labels", "year": "numeric"}), None
    return None, None


def _table(header: list[str], rows: list[list[str]], kinds: dict[str, str]) -> Attributes:
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    ids = _ids(frame[header[0]])
    titles = pd.Series(frame.pop("title").to_numpy(), index=ids) if "title" in frame else None
    return Attributes(ids, frame[list(kinds)].reset_index(drop=True), kinds, titles)

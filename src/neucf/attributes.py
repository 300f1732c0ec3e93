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
import json
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
        """Rows of features for ``ids`` (raw; an id without a row: all zero), encoded as this
        table's own :meth:`encoder` says.

        Examples:
            >>> users = read_attributes(b"user,age,gender\\n1,20,F\\n2,40,M\\n")
            >>> users.features([2]).toarray().tolist()
            [[1.0, 0.0, 0.0, 1.0]]
        """
        return self.encoder().transform(self, ids)

    def encoder(self) -> FeatureMap:
        """How this table's columns become features (:class:`FeatureMap`): the category
        values and labels it holds, each numeric column's mean and spread."""
        columns = []
        for name, kind in self.kinds.items():
            column = self.table[name].to_numpy(dtype=object)
            if kind == "numeric":
                values = _numbers(column)
                known = values[~np.isnan(values)]
                std = float(known.std()) if len(known) > 1 else 0.0
                columns.append((name, kind, [float(known.mean()) if len(known) else 0.0, std or 1.0]))
            else:
                labels = {label.strip() for v in column for label in _labels(v, kind)}
                columns.append((name, kind, sorted(label for label in labels if label)))
        return FeatureMap(tuple(columns))

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


def _numbers(column) -> np.ndarray:
    return pd.to_numeric(pd.Series(column, dtype=object).replace("", np.nan)).to_numpy(np.float64)


def _labels(value: str, kind: str) -> list[str]:
    return [label.strip() for label in (value.split("|") if kind == "labels" else [value]) if label.strip()]


@dataclass(frozen=True)
class FeatureMap:
    """How attribute columns become a feature matrix, fixed when a model is fitted so that rows
    given later (items added after training) are encoded as the training rows were: per
    column its name, kind and either its values (``category``, ``labels``: one feature each;
    a value not seen then is ignored) or, for ``numeric``, ``[mean, spread]`` (two features:
    the standardised value, and 1 where it is missing, the value then 0).

    Examples:
        >>> fm = read_attributes(b"item,genres\\n1,Comedy|Drama\\n").encoder()
        >>> fm.width, fm.transform(read_attributes(b"item,genres\\n9,Drama|Western\\n"), [9]).toarray().tolist()
        (2, [[0.0, 1.0]])
    """

    columns: tuple[tuple[str, str, list], ...]

    @property
    def width(self) -> int:
        """The number of features."""
        return sum(2 if kind == "numeric" else len(values) for _, kind, values in self.columns)

    def transform(self, attributes: Attributes, ids) -> sp.csr_matrix:
        """The features of ``ids`` (raw) from ``attributes`` (a column it lacks: missing)."""
        rows = attributes.rows_for(ids)
        found = rows >= 0
        blocks = []
        for name, kind, values in self.columns:
            column = attributes.table[name].to_numpy(dtype=object) if name in attributes.table else None
            if kind == "numeric":
                block = np.zeros((len(rows), 2))
                block[:, 1] = 1.0
                if column is not None:
                    numbers = _numbers(column)[rows[found]]
                    known = ~np.isnan(numbers)
                    block[found, 0] = np.where(known, (numbers - values[0]) / values[1], 0.0)
                    block[found, 1] = ~known
                block[~found, 1] = 0.0  # no row: nothing is known of it, not a missing value
                blocks.append(sp.csr_matrix(block))
                continue
            position = {label: k for k, label in enumerate(values)}
            out_rows, out_cols = [], []
            if column is not None:
                for out_row in np.flatnonzero(found):
                    for label in _labels(column[rows[out_row]], kind):
                        if label in position:
                            out_rows.append(out_row)
                            out_cols.append(position[label])
            data = np.ones(len(out_rows))
            blocks.append(sp.csr_matrix((data, (out_rows, out_cols)), shape=(len(rows), len(values))))
        if not blocks:
            return sp.csr_matrix((len(rows), 0))
        return sp.hstack(blocks, format="csr")

    def to_dict(self) -> dict:
        """Plain values (for a model file)."""
        return {"columns": [[name, kind, list(values)] for name, kind, values in self.columns]}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureMap:
        """The map :meth:`to_dict` wrote."""
        return cls(tuple((name, kind, list(values)) for name, kind, values in data["columns"]))


def read_attributes(
    source, types: dict[str, str] | None = None, name: str | None = None, partial: bool = False
) -> Attributes:
    """An attribute file (see the module docstring): a path, its bytes, or an opener;
    ``types`` names a column's kind (``numeric``, ``category`` or ``labels``) over the one
    its values suggest (``partial``: it may name columns the file lacks, which the other
    table of a run has). Every problem is a :class:`DataError` naming the file and line.

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
    types = {k: v for k, v in (types or {}).items() if not partial or k in attributes}
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


# ---- split folders ------------------------------------------------------------------------------
#: a split folder's attribute files, item side first
SPLIT_FILES = ("items.csv", "users.csv")
#: the file in a split folder that keeps each attribute column's kind (zip codes stay text)
KINDS_FILE = "attributes.json"


def write_folder_attributes(folder, items: Attributes | None, users: Attributes | None) -> list[Path]:
    """Write ``items.csv`` and ``users.csv`` (those given) into ``folder``, and their columns'
    kinds into ``attributes.json``, so :func:`read_folder_attributes` reads them back as they
    were. Returns the files written."""
    from .files import atomic_write

    folder, written, kinds = Path(folder), [], {}
    for table, file, kind in zip((items, users), SPLIT_FILES, ("item", "user")):
        if table is not None:
            table.write_csv(folder / file, kind)
            kinds[file] = table.kinds
            written.append(folder / file)
    if kinds:
        with atomic_write(folder / KINDS_FILE, "w") as handle:
            json.dump(kinds, handle, indent=1)
        written.append(folder / KINDS_FILE)
    return written


def read_folder_attributes(folder, types: dict[str, str] | None = None) -> tuple[Attributes | None, Attributes | None]:
    """The ``items.csv`` and ``users.csv`` of a split (or run) folder, typed as
    ``attributes.json`` says and then as ``types`` (``--attribute-types``) says; None for a
    file the folder lacks.

    Examples:
        >>> read_folder_attributes("no/such/folder")
        (None, None)
    """
    folder = Path(folder)
    kinds = {}
    if (folder / KINDS_FILE).is_file():
        try:
            kinds = json.loads((folder / KINDS_FILE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{folder / KINDS_FILE}: not JSON ({exc}); write the split again") from None
    found = []
    for file in SPLIT_FILES:
        path = folder / file
        own = kinds.get(file) if isinstance(kinds.get(file), dict) else {}
        found.append(read_attributes(path, {**own, **(types or {})}, partial=True) if path.is_file() else None)
    return found[0], found[1]


# ---- the MovieLens releases ------------------------------------------------------------------------
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _year_of_title(title: str) -> str:
    found = _YEAR.search(title or "")
    return found.group(1) if found else ""


#: with ``tags``, the most used tags a release's ``tags.csv`` gives the items (a label each)
MAX_TAGS = 1000


def movielens_attributes(path, tags: bool = False) -> tuple[Attributes | None, Attributes | None]:
    """The item and user attributes a MovieLens release ships, from its folder or zip, or from
    the folder of one of its ratings files: ml-100k (``u.item`` genres and release year,
    ``u.user`` age, gender, occupation and the zip code's first digit), ML-1M (``movies.dat``
    genres and the year in the title, ``users.dat`` likewise with its age and occupation
    codes), ml-latest and ML-20M/25M/32M (``movies.csv`` genres and year; no user
    attributes). ``(None, None)`` where there are none. ``tags`` (opt-in: users tag what they
    watched, so a tag can tell who rated an item) adds ``tags.csv``'s tags as a ``tags`` label
    column, the :data:`MAX_TAGS` most used, lowercased.

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
        kinds = {"genres": "labels", "year": "numeric"}
        if tags and (raw := read("tags.csv")) is not None:
            by_item = _tags(decode_text(raw, "tags.csv"))
            lines = [[*line, "|".join(by_item.get(line[0], []))] for line in lines]
            kinds["tags"] = "labels"
        return _table(["item", "title", *kinds], lines, kinds), None
    return None, None


def _tags(text: str) -> dict[str, list[str]]:
    """Each item's tags (``userId,movieId,tag,timestamp``), of the :data:`MAX_TAGS` most used."""
    frame = pd.read_csv(io.StringIO(text), usecols=[1, 2], names=["item", "tag"], header=0, dtype=str)
    frame["tag"] = frame["tag"].fillna("").str.strip().str.lower().str.replace("|", " ", regex=False)
    frame = frame[frame["tag"] != ""].drop_duplicates()
    kept = frame["tag"].value_counts().index[:MAX_TAGS]
    frame = frame[frame["tag"].isin(kept)]
    return {item: sorted(group) for item, group in frame.groupby("item")["tag"]}


def _table(header: list[str], rows: list[list[str]], kinds: dict[str, str]) -> Attributes:
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    ids = _ids(frame[header[0]])
    titles = pd.Series(frame.pop("title").to_numpy(), index=ids) if "title" in frame else None
    return Attributes(ids, frame[list(kinds)].reset_index(drop=True), kinds, titles)

"""Split folders: ``train.csv``, ``valid.csv`` (optional) and ``test.csv`` with raw ids, so any
library can run on exactly the same split.

Examples:
    >>> ratings, split = load_split_dir("split/")  # doctest: +SKIP
    >>> write_split_dir(ratings, split, "copy/")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .ratings import Ratings, show_id
from .readers import LoaderOptions, read_ratings_file, resolve_duplicates

PARTS = ("train", "valid", "test")


def write_split_dir(ratings: Ratings, split, out: str | Path) -> list[Path]:
    """Write each non-empty part of ``split`` as ``out/{part}.csv`` with raw ids, each atomically;
    a part left empty has its old file removed. Returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PARTS:
        index = getattr(split, name)
        target = out / f"{name}.csv"
        if len(index) == 0:
            target.unlink(missing_ok=True)
            continue
        ratings.subset(index).write_csv(target)
        written.append(target)
    return written


def read_part_file(path: str | Path, scale: tuple[float, float] | None = None) -> Ratings:
    """One part of a split or run folder (``train.csv``, ``valid.csv``, ``test.csv``): comma
    separated, with a header naming every column (``user,item,rating[,timestamp]``, or
    ``user,item[,weight][,timestamp]`` for interactions), ratings inside ``scale`` when given. A file without that header is an error naming what it has,
    never read by position.

    Examples:
        >>> read_part_file(b"user,item,timestamp\\n1,2,880000000\\n")  # doctest: +SKIP
        neucf.errors.DataError: data line 1: expected the header user,item,rating[,timestamp], ...
    """
    return read_ratings_file(path, PART_OPTIONS if scale is None else dataclasses.replace(PART_OPTIONS, scale=scale))


#: how the parts of split and run folders are read
PART_OPTIONS = LoaderOptions(sep=",", named_header=True)


def load_split_dir(directory: str | Path, options: LoaderOptions = PART_OPTIONS):
    """Read a folder written by ``neucf data split``: ``train.csv``, optional ``valid.csv``,
    ``test.csv``, each with the header ``user,item,rating[,timestamp]`` (interactions:
    ``user,item[,weight][,timestamp]``). Returns ``(ratings, split)`` with one shared id
    map, parts as written.

    Examples:
        >>> ratings, split = load_split_dir("split/")  # doctest: +SKIP
    """
    from ..splits import Split

    directory = Path(directory)
    frames, implicit = {}, {}
    for part in PARTS:
        path = directory / f"{part}.csv"
        if path.is_file():
            read = read_ratings_file(path, options)
            frames[part], implicit[part] = read.to_frame(), read.implicit
        elif part != "valid":
            raise DataError(f"{directory}: has no {part}.csv; write one with neucf data split --out {directory}")
    if len(set(implicit.values())) > 1:
        rated = ", ".join(f"{p}.csv" for p, i in implicit.items() if not i)
        bare = ", ".join(f"{p}.csv" for p, i in implicit.items() if i)
        raise DataError(
            f"{directory}: {rated} hold ratings but {bare} only interactions; every part needs the same columns"
        )
    for column in ("user", "item"):
        # each file types its ids on its own; one part with text ids makes the column text
        if any(f[column].dtype.kind == "O" for f in frames.values()):
            for f in frames.values():
                f[column] = f[column].astype(str)
    joined = pd.concat(frames.values(), ignore_index=True)
    label = np.concatenate([np.full(len(f), part) for part, f in frames.items()])
    repeated = np.flatnonzero(joined.duplicated(["user", "item"], keep=False).to_numpy())
    if len(repeated):
        user, item = joined["user"].iloc[repeated[0]], joined["item"].iloc[repeated[0]]
        same = repeated[
            (joined["user"].iloc[repeated] == user).to_numpy() & (joined["item"].iloc[repeated] == item).to_numpy()
        ]
        where = " and ".join(f"{p}.csv" for p in PARTS if p in set(label[same]))
        raise DataError(
            f"{directory}: user {show_id(user)} rated item {show_id(item)} twice ({where}); the parts of a split "
            "must hold each (user, item) pair once"
        )
    timestamps = joined["timestamp"] if "timestamp" in joined and not joined["timestamp"].isna().any() else None
    bare = next(iter(implicit.values()))
    values = joined.get("weight", joined.get("rating"))
    values = None if values is None else values.fillna(1.0)  # a part whose weights are all 1 writes none
    ratings = Ratings.from_arrays(joined["user"], joined["item"], values, timestamps, options.scale, implicit=bare)
    ratings = resolve_duplicates(ratings, "error", str(directory))
    return ratings, Split(*(np.flatnonzero(label == p) for p in PARTS))

"""Data in: built-in MovieLens releases, any delimited ratings file, and the ratings container.

Example:
    >>> from neucf.datasets import load
    >>> ratings = load(data="ml-100k")          # doctest: +SKIP
    >>> ratings = load(dataset="ml-100k")       # downloads once, then cached  # doctest: +SKIP
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import DataError, UsageError
from .filters import filter_for_split, filter_min_ratings
from .movielens import DATASETS, DatasetSpec, data_dir, dataset_spec, fetch, load_movielens
from .ratings import Ratings
from .readers import LoaderOptions, read_ratings_file, resolve_duplicates, sniff

__all__ = [
    "DATASETS", "DatasetSpec", "LoaderOptions", "Ratings", "data_dir", "dataset_spec", "fetch",
    "filter_for_split", "filter_min_ratings", "load", "load_movielens", "load_split_dir", "read_ratings_file", "resolve_duplicates", "sniff",
]


def load(
    data: str | Path | None = None,
    dataset: str | None = None,
    options: LoaderOptions = LoaderOptions(),
    directory: str | Path | None = None,
) -> Ratings:
    """Load ratings from a local path (``data``) or a built-in dataset name (``dataset``).

    ``data`` may be a MovieLens folder or zip, or any delimited ratings file read with
    ``options``. ``dataset`` is fetched into ``directory`` (see :func:`data_dir`) on first use.

    Example:
        >>> r = load(data="ratings.csv", options=LoaderOptions(duplicates="mean"))  # doctest: +SKIP
    """
    if (data is None) == (dataset is None):
        raise UsageError("give exactly one of --data PATH or --dataset NAME")
    if dataset is not None:
        spec = dataset_spec(dataset)
        cached = data_dir(directory) / spec.filename
        return load_movielens(cached if cached.is_file() else fetch(spec, directory), options)
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or zipfile.is_zipfile(path):
        return load_movielens(path, options)
    return read_ratings_file(path, options)


def load_split_dir(directory: str | Path, options: LoaderOptions = LoaderOptions(sep=",", header=True)):
    """Read a folder written by ``neucf data split``: ``train.csv``, optional ``valid.csv``,
    ``test.csv``. Returns ``(ratings, split)`` with one shared id map, parts as written.

    Example:
        >>> ratings, split = load_split_dir("split/")  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from ..splits import Split

    directory = Path(directory)
    frames = {}
    for part in ("train", "valid", "test"):
        path = directory / f"{part}.csv"
        if path.is_file():
            frames[part] = read_ratings_file(path, options).to_frame()
        elif part != "valid":
            raise DataError(f"{directory}: has no {part}.csv; write one with neucf data split --out {directory}")
    joined = pd.concat(frames.values(), ignore_index=True)
    label = np.concatenate([np.full(len(f), part) for part, f in frames.items()])
    timestamps = joined["timestamp"] if "timestamp" in joined and not joined["timestamp"].isna().any() else None
    ratings = Ratings.from_arrays(joined["user"], joined["item"], joined["rating"], timestamps, options.scale)
    ratings = resolve_duplicates(ratings, "error", str(directory))
    return ratings, Split(*(np.flatnonzero(label == p) for p in ("train", "valid", "test")))

"""Data in: built-in MovieLens releases, any delimited ratings file, and the ratings container.

Examples:
    >>> from neucf.datasets import load
    >>> ratings = load(data="ml-100k")          # doctest: +SKIP
    >>> ratings = load(dataset="ml-100k")       # downloads once, then cached  # doctest: +SKIP
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import DataError, UsageError
from .filters import filter_for_split, filter_min_ratings, k_core
from .movielens import DATASETS, DatasetSpec, data_dir, dataset_spec, fetch, load_movielens, movielens_layout
from .ratings import Ratings
from .readers import LoaderOptions, read_ratings_file, read_table, resolve_duplicates, sniff
from .split_files import load_split_dir, read_part_file, write_split_dir

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "LoaderOptions",
    "Ratings",
    "data_dir",
    "dataset_spec",
    "fetch",
    "filter_for_split",
    "filter_min_ratings",
    "k_core",
    "load",
    "load_movielens",
    "load_split_dir",
    "movielens_layout",
    "read_part_file",
    "read_ratings_file",
    "read_table",
    "resolve_duplicates",
    "sniff",
    "write_split_dir",
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

    Examples:
        >>> r = load(data="ratings.csv", options=LoaderOptions(duplicates="mean"))  # doctest: +SKIP
    """
    if (data is None) == (dataset is None):
        raise UsageError("give exactly one of --data PATH or --dataset NAME")
    if dataset is not None:
        spec = dataset_spec(dataset)
        cached = data_dir(directory) / spec.filename
        return load_movielens(cached if cached.is_file() else fetch(spec, directory), options)
    path = Path(data)
    if str(data) != "-" and not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or (path.is_file() and zipfile.is_zipfile(path)):
        given = [flag for flag, value in (("--sep", options.sep), ("--header", options.header),
                                          ("--columns", options.columns)) if value is not None]  # fmt: skip
        if given:
            raise UsageError(
                f"{', '.join(given)} apply to a ratings file; {path} is a MovieLens release with its own layout"
            )
        return load_movielens(path, options)
    return read_ratings_file(path, options)

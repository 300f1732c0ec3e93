"""Built-in MovieLens datasets: where they live, how to fetch them, how their files look."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError, UsageError
from .ratings import Ratings
from .readers import LoaderOptions, read_ratings_file

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable MovieLens release.

    Attributes:
        name: the name users type (``ml-100k``).
        filename: the archive's file name, also its name in the cache.
        md5: GroupLens' published checksum; None for the ``latest`` sets, which change.
        url: where to download it; defaults to GroupLens (or ``$NEUCF_MOVIELENS_URL``).

    Examples:
        >>> DATASETS["ml-100k"].filename
        'ml-100k.zip'
    """

    name: str
    filename: str
    md5: str | None
    url: str | None = None

    def resolved_url(self) -> str:
        """The download address: ``url``, else the mirror in ``NEUCF_MOVIELENS_URL``, else GroupLens."""
        return self.url or os.environ.get("NEUCF_MOVIELENS_URL", GROUPLENS).rstrip("/") + "/" + self.filename


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("ml-100k", "ml-100k.zip", "0e33842e24a9c977be4e0107933c0723"),
        DatasetSpec("ml-1m", "ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
        DatasetSpec("ml-10m", "ml-10m.zip", "ce571fd55effeba0271552578f2648bd"),
        DatasetSpec("ml-20m", "ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3"),
        DatasetSpec("ml-25m", "ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada"),
        DatasetSpec("ml-32m", "ml-32m.zip", "d472be332d4daa821edc399621853b57"),
        DatasetSpec("ml-latest-small", "ml-latest-small.zip", None),
        DatasetSpec("ml-latest", "ml-latest.zip", None),
    ]
}


def data_dir(override: str | Path | None = None) -> Path:
    """The download cache: ``override``, else ``$NEUCF_DATA_DIR``, else the platform cache folder."""
    if override:
        return Path(override)
    if os.environ.get("NEUCF_DATA_DIR"):
        return Path(os.environ["NEUCF_DATA_DIR"])
    import pooch

    return Path(pooch.os_cache("neucf"))


def fetch(spec: DatasetSpec | str, directory: str | Path | None = None) -> Path:
    """Download a release once (checksum-verified, with a progress bar) and return the zip's path.

    pooch downloads into a temporary file and renames it only after the checksum
    matches, so an interrupted or corrupted download never leaves a file behind.

    Examples:
        >>> fetch("ml-100k")  # doctest: +SKIP
        PosixPath('/home/me/.cache/neucf/ml-100k.zip')
    """
    import pooch
    import requests

    if isinstance(spec, str):
        spec = dataset_spec(spec)
    target = data_dir(directory)
    url = spec.resolved_url()
    try:
        path = pooch.retrieve(
            url,
            known_hash=f"md5:{spec.md5}" if spec.md5 else None,
            fname=spec.filename,
            path=target,
            progressbar=True,
        )
    except requests.exceptions.RequestException as exc:
        raise DataError(
            f"could not download {spec.name} from {url} ({type(exc).__name__}); download {spec.filename} "
            f"yourself and pass --data PATH/{spec.filename}, or put it in {target}"
        ) from None
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        raise DataError(
            f"{spec.name}: the file downloaded from {url} does not match its published checksum "
            "(corrupted or changed download; nothing was kept); try again or pass --data with a copy you trust"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot write {spec.filename} into {target}: {exc.strerror}; pick --data-dir") from None
    return Path(path)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a built-in dataset; an unknown name lists the known ones."""
    key = name if name.startswith("ml-") or name not in {n[3:] for n in DATASETS} else "ml-" + name
    if key not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


# The MovieLens layouts: (ratings file, its reader options, titles file, titles reader)
_LAYOUTS = {
    "u.data": LoaderOptions(sep="\t", header=False, columns=("user", "item", "rating", "timestamp"), scale=(1, 5)),
    "ratings.dat": LoaderOptions(sep="::", header=False, columns=("user", "item", "rating", "timestamp"), scale=None),
    "ratings.csv": LoaderOptions(sep=",", header=True, columns=("user", "item", "rating", "timestamp"), scale=(0.5, 5)),
}
_TITLES = {"u.data": "u.item", "ratings.dat": "movies.dat", "ratings.csv": "movies.csv"}


def movielens_layout(path: str | Path) -> str | None:
    """The ratings file of the MovieLens release at ``path`` (``u.data`` for ML-100k,
    ``ratings.dat``, ``ratings.csv``), or None when ``path`` is not a release folder or zip.

    Examples:
        >>> movielens_layout("no/such/folder") is None
        True
    """
    path = Path(path)
    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                present = {Path(n).name for n in archive.namelist()}
        elif path.is_dir():
            present = {p.name for p in [*path.glob("*"), *path.glob("*/*")] if p.is_file()}
        else:
            return None
    except (OSError, zipfile.BadZipFile):
        return None
    return next((b for b in _LAYOUTS if b in present), None)


def load_movielens(path: str | Path, options: LoaderOptions = LoaderOptions()) -> Ratings:
    """Load a MovieLens release from its extracted folder or its zip (read in place).

    The file layout decides the format (u.data, ratings.dat or ratings.csv); only
    ``options.duplicates`` and ``options.scale`` apply. Titles come along when present.

    Examples:
        >>> r = load_movielens("ml-100k")  # doctest: +SKIP
        >>> len(r), r.n_users, r.n_items  # doctest: +SKIP
        (100000, 943, 1682)
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = {Path(n).name: n for n in archive.namelist()}
        opener_of = lambda base: lambda: archive.open(members[base])  # noqa: E731
        present = members.keys()
    elif path.is_dir():
        files = {p.name: p for p in [*path.glob("*"), *path.glob("*/*")] if p.is_file()}
        opener_of = lambda base: lambda: open(files[base], "rb")  # noqa: E731
        present = files.keys()
    else:
        raise DataError(f"{path}: not a MovieLens folder or zip")
    base = next((b for b in _LAYOUTS if b in present), None)
    if base is None:
        raise DataError(f"{path}: holds none of u.data, ratings.dat, ratings.csv; is it a MovieLens release?")
    layout = _LAYOUTS[base]
    # ML-1M rates in whole stars and ML-10M in half stars: ratings.dat's scale is inferred
    layout = dataclasses.replace(layout, duplicates=options.duplicates, scale=options.scale or layout.scale)
    titles = _read_titles(opener_of(_TITLES[base]), _TITLES[base]) if _TITLES[base] in present else None
    return read_ratings_file(opener_of(base), layout, name=f"{path.name}/{base}", item_titles=titles)


def _read_titles(opener, base: str) -> pd.Series | None:
    with opener() as stream:
        if base == "u.item":
            frame = pd.read_csv(stream, sep="|", header=None, usecols=[0, 1], encoding="latin-1")
        elif base == "movies.dat":
            raw = stream.read().decode("latin-1").splitlines()
            parts = [ln.split("::") for ln in raw if ln]
            frame = pd.DataFrame([(int(p[0]), p[1]) for p in parts])
        else:
            frame = pd.read_csv(stream, usecols=[0, 1], encoding="utf-8")
    return pd.Series(frame.iloc[:, 1].to_numpy(), index=frame.iloc[:, 0].to_numpy())
